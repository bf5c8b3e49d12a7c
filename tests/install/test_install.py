#!/usr/bin/env python3
"""`meson install --destdir` of the build into a temporary directory, then
check what an operator or a package would get:
  - both systemd units pass `systemd-analyze verify`, with no warning at
    all, on a Debian-like root (no Xen units: Debian 12 starts xenstored
    from /etc/init.d/xen) and on one with stub upstream Xen units
    (xenstored.service, proc-xen.mount); their ExecStart= binaries and
    man: documentation exist in the installed tree;
  - every man page renders with `man -l`, without warnings;
  - the example config is installed and passes --check-config;
  - the bash completion is installed and registers itself.
The tools are not optional: a missing systemd-analyze, man or scdoc makes
the test FAIL with the package to install, never skip.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

BUILD = os.environ.get("SHAREMIG_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL " + msg, flush=True)


def ok(msg):
    print("ok   " + msg, flush=True)


def need(tool, package):
    path = shutil.which(tool)
    if path is None:
        fail("%s not found: install the Debian package %s" % (tool, package))
    return path


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300,
                          **kw)


def stub(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def verify_units(root, prefix, units, label):
    """systemd-analyze verify in root; any output is a failure."""
    env = dict(os.environ, MANPATH=os.path.join(root, prefix.lstrip("/"),
                                                "share", "man"))
    env.pop("SYSTEMD_UNIT_PATH", None)
    p = run(["systemd-analyze", "verify", "--root=" + root] +
            [u[len(root):] for u in units], env=env)
    out = (p.stdout + p.stderr).strip()
    if p.returncode != 0 or out:
        fail("systemd-analyze verify (%s): exit %d:\n%s" %
             (label, p.returncode, out))
    else:
        ok("systemd-analyze verify (%s): %s" %
           (label, ", ".join(os.path.basename(u) for u in units)))


def main():
    analyze = need("systemd-analyze", "systemd")
    man = need("man", "man-db")
    meson = need("meson", "meson")
    if meson is None:
        sys.exit(1)
    tmp = tempfile.mkdtemp(prefix="sharemig-install-")
    try:
        p = run([meson, "install", "-C", BUILD, "--no-rebuild", "--quiet",
                 "--destdir", tmp])
        if p.returncode != 0:
            fail("meson install: %s%s" % (p.stdout, p.stderr))
            return
        ok("meson install --destdir %s" % tmp)
        units = sorted(glob.glob(os.path.join(
            tmp, "**", "lib", "systemd", "system", "sharemig-*.service"),
            recursive=True))
        names = sorted(os.path.basename(u) for u in units)
        if names != ["sharemig-destd.service", "sharemig-sourced.service"]:
            fail("installed units: %r" % names)
            return
        # PREFIX/lib/systemd/system/x.service -> PREFIX
        prefix = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.dirname(units[0]))))[len(tmp):] or "/"
        ok("units installed under %s" % prefix)

        # ---- man pages ----
        pages = sorted(glob.glob(os.path.join(
            tmp, prefix.lstrip("/"), "share", "man", "man*", "*")))
        want = ["migratectl.8", "sharemig-destd.8", "sharemig-sourced.8",
                "sharemig.conf.5"]
        got = sorted(os.path.basename(x) for x in pages)
        if got != want:
            fail("man pages installed: %r, expected %r%s" % (
                got, want, "" if shutil.which("scdoc") else
                " (scdoc not found: install the Debian package scdoc)"))
        if man is not None:
            for page in pages:
                env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8",
                           MAN_KEEP_FORMATTING="0")
                # --warnings: groff's warnings (bad macros, ...) on stderr.
                p = run([man, "--warnings", "-l", page], env=env)
                name = os.path.basename(page).rsplit(".", 1)[0]
                text = re.sub(".\x08", "", p.stdout)    # overstrike
                if (p.returncode != 0 or p.stderr.strip() or
                        "NAME" not in text or name not in text or
                        "SEE ALSO" not in text):
                    fail("man -l %s: exit %d, stderr %r, output %r" %
                         (os.path.basename(page), p.returncode, p.stderr,
                          text[:300]))
                else:
                    ok("man -l %s renders (%d lines)" %
                       (os.path.basename(page), len(text.splitlines())))

        # ---- units ----
        if analyze is not None:
            # A root with this system's units (targets, sockets) around
            # the installed tree; nothing outside tmp is touched.
            for d in ("/usr/lib/systemd/system", "/lib/systemd/system"):
                if os.path.isdir(d) and not os.path.islink(
                        os.path.dirname(os.path.dirname(d))):
                    break
            dst = os.path.join(tmp, "usr", "lib", "systemd", "system")
            os.makedirs(dst, exist_ok=True)
            for f in os.listdir(d):
                s = os.path.join(d, f)
                t = os.path.join(dst, f)
                if not os.path.lexists(t):
                    if os.path.islink(s):
                        os.symlink(os.readlink(s), t)
                    elif os.path.isfile(s):
                        shutil.copy2(s, t)
                    elif os.path.isdir(s):
                        shutil.copytree(s, t, symlinks=True)
            verify_units(tmp, prefix, units, "no Xen units, as on Debian")
            etc = os.path.join(tmp, "etc", "systemd", "system")
            stub(os.path.join(etc, "proc-xen.mount"),
                 "[Unit]\nDescription=stub of Xen's proc-xen.mount\n"
                 "[Mount]\nWhat=xenfs\nWhere=/proc/xen\nType=xenfs\n")
            stub(os.path.join(etc, "xenstored.service"),
                 "[Unit]\nDescription=stub of Xen's xenstored.service\n"
                 "Requires=proc-xen.mount\nAfter=proc-xen.mount\n"
                 "[Service]\nType=notify\nExecStart=/bin/true\n")
            verify_units(tmp, prefix, units, "with Xen's upstream units")
            for u in units:
                with open(u) as f:
                    text = f.read()
                for exe in [ln.split("=", 1)[1].split()[0]
                            for ln in text.splitlines()
                            if ln.startswith("ExecStart=")]:
                    if not os.access(os.path.join(tmp, exe.lstrip("/")),
                                     os.X_OK):
                        fail("%s: ExecStart %s not installed" %
                             (os.path.basename(u), exe))
                if re.search(r"@[A-Z_]+@", text):
                    fail("%s: unsubstituted @VAR@" % os.path.basename(u))

        # ---- example config ----
        confs = glob.glob(os.path.join(tmp, "**", "sharemig",
                                       "sharemig.conf"), recursive=True)
        destd = glob.glob(os.path.join(tmp, "**", "sbin", "sharemig-destd"),
                          recursive=True)
        if not confs or not destd:
            fail("example config or sharemig-destd not installed")
        else:
            for conf in confs:
                p = run([destd[0], "--config", conf, "--check-config",
                         "--insecure"])
                if p.returncode != 0:
                    fail("--check-config %s: %s" % (conf, p.stderr))
                else:
                    ok("installed %s passes --check-config" %
                       conf[len(tmp):])

        # ---- bash completion ----
        comp = glob.glob(os.path.join(tmp, "**", "completions",
                                      "migratectl"), recursive=True)
        if not comp:
            fail("bash completion not installed")
        else:
            p = run(["bash", "-c", 'source "$1" && complete -p migratectl',
                     "bash", comp[0]])
            if p.returncode != 0 or "_migratectl" not in p.stdout:
                fail("completion does not register: %s%s" %
                     (p.stdout, p.stderr))
            else:
                ok("bash completion %s registers" % comp[0][len(tmp):])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
    print("install: %s" % ("%d failed" % len(failures) if failures
                           else "all passed"))
    sys.exit(1 if failures else 0)
