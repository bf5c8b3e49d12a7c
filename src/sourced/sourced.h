#ifndef SHAREMIG_SOURCED_H
#define SHAREMIG_SOURCED_H

/* The whole daemon; returns the process exit status. */
int	sourced_main(int argc, char **argv);

#endif
