/*
 * sharemig-sourced - the source daemon.  Everything is in libsourced so
 * tests link the same objects.
 */
#include "sourced.h"
#include "link.h"

int
main(int argc, char **argv)
{
	link_heap_setup();
	return sourced_main(argc, argv);
}
