/*
 * hostid.h - the identity a daemon announces in HELLO: 16 bytes derived
 * from /etc/machine-id and the state directory (two simulated hosts on
 * one machine differ), and a printable name.
 */
#ifndef SHAREMIG_HOSTID_H
#define SHAREMIG_HOSTID_H

#include <stddef.h>
#include <stdint.h>

/* name_override may be NULL (then the machine's hostname; two simulated
 * hosts on one machine share it but not their ids). */
void	hostid_get(const char *state_dir, uint8_t id[16], char *name,
	    size_t namelen, const char *name_override);

#endif
