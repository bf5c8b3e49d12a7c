/*
 * hostid.c - see hostid.h.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostid.h"
#include "pagehash.h"

void
hostid_get(const char *state_dir, uint8_t id[16], char *name, size_t namelen,
    const char *name_override)
{
	char mid[64] = "", host[256] = "localhost", buf[PATH_MAX + 128];
	char rp[PATH_MAX];
	uint8_t d[32];
	FILE *f;

	if ((f = fopen("/etc/machine-id", "r")) != NULL) {
		if (fgets(mid, sizeof(mid), f) == NULL)
			mid[0] = '\0';
		fclose(f);
		mid[strcspn(mid, "\n")] = '\0';
	}
	if (state_dir == NULL || realpath(state_dir, rp) == NULL)
		snprintf(rp, sizeof(rp), "%s", state_dir ? state_dir : "");
	snprintf(buf, sizeof(buf), "sharemig-host:%s:%s", mid, rp);
	ph_sha256_buf(buf, strlen(buf), d);
	memcpy(id, d, 16);
	(void)gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	if (name_override != NULL)
		snprintf(name, namelen, "%s", name_override);
	else
		snprintf(name, namelen, "%s", host);
}
