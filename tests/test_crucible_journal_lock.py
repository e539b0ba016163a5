"""One writer per journal *file* (issue 28, item 4).

The lock of issue 18 was per path name (``<journal>.lock``): two writers given one journal through a symlink,
a hard link or a bind mount of the file both took "their" lock and both traded one account.  The lock is now
on the file's (st_dev, st_ino) as well; every case below fails on that code (the second writer is let in).
The bind-mount case needs a mount namespace (``unshare -m`` as root, ``unshare -rm`` otherwise) and is
skipped, with the reason, where neither works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crucible.journal import Journal, JournalLock, JournalLocked, archive_journal

REPO = Path(__file__).resolve().parents[1]


def _second_writer_refused(first: Path, second: Path) -> JournalLocked:
    j = Journal(first)
    try:
        assert os.stat(first).st_ino == os.stat(second).st_ino
        with pytest.raises(JournalLocked) as ei:
            Journal(second)
        return ei.value
    finally:
        j.close()


def test_symlink_to_a_journal_is_the_same_writer(tmp_path):
    real = tmp_path / "journal.sqlite"
    link = tmp_path / "other" / "alias.sqlite"
    link.parent.mkdir()
    Journal(real).close()
    link.symlink_to(real)
    err = _second_writer_refused(real, link)
    assert err.pid == os.getpid() and "symlink, hard link or bind mount" in str(err)
    err = _second_writer_refused(link, real)  # either way round
    assert err.pid == os.getpid()
    Journal(link).close()  # released


def test_hard_link_to_a_journal_is_the_same_writer(tmp_path):
    real = tmp_path / "journal.sqlite"
    Journal(real).close()
    hard = tmp_path / "copy.sqlite"
    os.link(real, hard)
    err = _second_writer_refused(hard, real)
    assert err.pid == os.getpid() and err.exit_code == 2


def test_symlink_before_the_journal_exists(tmp_path):
    """A dangling symlink to a journal not created yet: the first writer creates the file it names, so the
    second writer, through the real name, finds it locked."""
    real = tmp_path / "journal.sqlite"
    link = tmp_path / "alias.sqlite"
    link.symlink_to(real)
    j = Journal(link)
    try:
        assert real.is_file()
        with pytest.raises(JournalLocked):
            Journal(real)
    finally:
        j.close()


def test_archive_moves_the_inode_lock_to_the_new_file(tmp_path):
    """After an archive step the lock holds the new journal file (not the archived one): a writer through a
    symlink to the path is refused, and the archive itself is free again."""
    real = tmp_path / "journal.sqlite"
    Journal(real).close()
    lock = JournalLock(real).acquire()
    try:
        old = lock.identity
        dest = archive_journal(real)
        j = Journal(real, lock=lock)
        assert lock.identity != old and lock.identity == (os.stat(real).st_dev, os.stat(real).st_ino)
        link = tmp_path / "alias.sqlite"
        link.symlink_to(real)
        with pytest.raises(JournalLocked):
            Journal(link)
        Journal(dest).close()  # the archived file is not held
        j.close()
    finally:
        lock.release()


_HOLD = textwrap.dedent("""
    import sys, time
    from crucible.journal import Journal
    j = Journal(sys.argv[1])
    print("held", flush=True)
    time.sleep(60)
""")


def _unshare_cmd() -> list[str] | None:
    """argv prefix that runs a command in a new mount namespace, or None (the reason is in the skip)."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    for opts in (["-m"], ["-r", "-m"]):
        try:
            if subprocess.run([exe, *opts, "true"], capture_output=True, timeout=20).returncode == 0:
                return [exe, *opts]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def test_bind_mount_of_the_journal_file_is_the_same_writer(tmp_path):
    """A process in its own mount namespace bind-mounts the journal file onto another name (another folder,
    so its path lock file differs too) and writes through it; a writer through the real name is refused."""
    prefix = _unshare_cmd()
    if prefix is None:
        pytest.skip("no mount namespace here: `unshare -m` (root) and `unshare -rm` (user namespace) both failed")
    real = tmp_path / "a" / "journal.sqlite"
    real.parent.mkdir()
    Journal(real).close()
    target = tmp_path / "b" / "mounted.sqlite"
    target.parent.mkdir()
    target.write_bytes(b"")
    script = (f"mount --bind {real} {target} && exec {sys.executable} -c '{_HOLD}' {target}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([*prefix, "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=REPO)
    try:
        line = child.stdout.readline()
        if line.strip() != "held":
            child.kill()
            _, err = child.communicate()
            pytest.skip(f"bind mount not permitted in this namespace: {err.strip()[-200:]}")
        assert target.stat().st_ino != real.stat().st_ino  # outside the namespace: two different files
        deadline = time.monotonic() + 10
        with pytest.raises(JournalLocked) as ei:
            while time.monotonic() < deadline:
                Journal(real).close()
                time.sleep(0.1)
        assert "another name" in str(ei.value)
    finally:
        child.kill()
        child.communicate()
    Journal(real).close()  # the lock died with the holder
