#ifndef SHAREMIG_DESTD_H
#define SHAREMIG_DESTD_H

/* The whole daemon; returns the process exit status. */
int	destd_main(int argc, char **argv);

#endif
