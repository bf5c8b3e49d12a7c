/*
 * sharemig-destd - the destination daemon.  Everything is in libdestd so
 * tests link the same objects.
 */
#include "destd.h"
#include "link.h"

int
main(int argc, char **argv)
{
	link_heap_setup();
	return destd_main(argc, argv);
}
