/*
 * sharemig-destd - the destination daemon.  Everything is in libdestd so
 * tests link the same objects.
 */
#include "destd.h"

int
main(int argc, char **argv)
{
	return destd_main(argc, argv);
}
