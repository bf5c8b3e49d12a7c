/*
 * sharemig-sourced - the source daemon.  Everything is in libsourced so
 * tests link the same objects.
 */
#include "sourced.h"

int
main(int argc, char **argv)
{
	return sourced_main(argc, argv);
}
