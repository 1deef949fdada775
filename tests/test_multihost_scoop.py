"""SCOOP over real SSH: one worker on 127.0.0.1, one on 127.0.0.2, each started through an sshd of the test's own.

SCOOP starts every host that is not one of its local names over SSH. The test starts ``sshd`` on both loopback
addresses (a throw-away host key and client key, a free port), gives the client its options through
``ssh -F`` (a wrapper passed as ``--ssh-executable``: ~/.ssh is never touched), and launches exactly what
docs/clusters.md shows: ``python -m scoop --hostfile H -n 2 --external-hostname 127.0.0.3 --ssh-executable S
-m learngene_ea.run ...``. SCOOP starts the origin on 127.0.0.1 (one of its local names) directly and the
worker on 127.0.0.2 through ``ssh 127.0.0.2``; it refuses a loopback external name with several hosts, and
127.0.0.3 is another loopback address that the worker reaches the broker by. Where sshd cannot run, the
tests skip with the reason.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import RECIPE, ROOT, read_logbook, tiny_overrides
from learngene_ea.io.checkpoint import load_latest_valid
from test_worker_death import cmdline, is_gone, wait_for

TESTS = os.path.dirname(os.path.abspath(__file__))
HOSTS = ("127.0.0.1", "127.0.0.2")
STALL_TIMEOUT = 10  # seconds; as in test_worker_death


def free_port():
    """A TCP port free on both loopback addresses."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((HOSTS[0], 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as other:
                other.bind((HOSTS[1], port))
            return port
        except OSError:
            continue
    pytest.skip("no TCP port is free on both 127.0.0.1 and 127.0.0.2")


def listening(port):
    """True once both loopback addresses accept connections on ``port``."""
    for host in HOSTS:
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return False
    return True


def write(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.fixture(scope="module")
def ssh(tmp_path_factory):
    """An sshd on 127.0.0.1 and 127.0.0.2 and the ``--ssh-executable`` that reaches it; skips with the reason."""
    sshd, client, keygen = (shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
                            for name in ("sshd", "ssh", "ssh-keygen"))
    if not (sshd and client and keygen):
        pytest.skip("sshd, ssh or ssh-keygen is not installed (package openssh-server; .ci/run installs it)")
    folder = tmp_path_factory.mktemp("ssh")
    for key in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = free_port()
    config = write(folder / "sshd_config", "".join(f"ListenAddress {host}:{port}\n" for host in HOSTS) + (
        f"HostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "LogLevel VERBOSE\n"))
    client_config = write(folder / "ssh_config", f"Host {' '.join(HOSTS)}\n  Port {port}\n"
                          f"  IdentityFile {folder / 'client_key'}\n  IdentitiesOnly yes\n"
                          "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    wrapper = write(folder / "ssh", f"#!/bin/sh\nexec {client} -F {client_config} \"$@\"\n", 0o700)
    try:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
    except OSError:
        pass  # sshd says so below if it needs it
    log = open(folder / "sshd.log", "w")
    daemon = subprocess.Popen([sshd, "-D", "-e", "-f", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while daemon.poll() is None and time.monotonic() < deadline and not listening(port):
            time.sleep(0.1)
        probe = subprocess.run([wrapper, "-oBatchMode=yes", HOSTS[1], "echo $SSH_CONNECTION"],
                               capture_output=True, text=True, timeout=30)
        if daemon.poll() is not None or probe.returncode != 0:
            reason = (folder / "sshd.log").read_text().strip().splitlines()[-1:] or [probe.stderr.strip()]
            pytest.skip(f"sshd cannot be started here: {reason[0]}")
        assert probe.stdout.split()[2:4] == [HOSTS[1], str(port)]
        yield {"ssh": wrapper, "log": folder / "sshd.log"}
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()


def scoop_args(ssh, run_dir, *overrides):
    hostfile = run_dir.parent / "hosts"
    hostfile.write_text("".join(f"{host} 1\n" for host in HOSTS))
    args = [sys.executable, "-m", "scoop", "--hostfile", str(hostfile), "-n", "2", "--external-hostname",
            "127.0.0.3", "--ssh-executable", ssh["ssh"], "-m", "learngene_ea.run", "--config", RECIPE,
            "--run-dir", str(run_dir), "--quiet"]
    return args + [a for item in tiny_overrides(**dict(overrides)) for a in ("--set", item)]


def launch(args):
    # the workers started over SSH get this PYTHONPATH from SCOOP (its --pythonpath default)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), OMP_NUM_THREADS="1")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc, timeout):
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # a hung run must not outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def ssh_session_of(pid):
    """``SSH_CONNECTION`` of a process ("client port server port"), or "" when SSH did not start it."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            variables = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    except OSError:
        return ""
    return variables.get(b"SSH_CONNECTION", b"").decode()


def scoop_processes_by_host():
    """``{server address: [pid, ...]}`` of SCOOP processes started over SSH (found through /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and "scoop.bootstrap" in cmdline(int(entry)):
            session = ssh_session_of(int(entry)).split()
            if len(session) == 4:
                found.setdefault(session[2], []).append(int(entry))
    return found


@pytest.mark.slow
def test_two_hosts_over_ssh_give_the_logbook_of_one_process(ssh, serial_logbook, tmp_path):
    run_dir = tmp_path / "run"
    seen = {}
    proc = launch(scoop_args(ssh, run_dir))
    while proc.poll() is None and HOSTS[1] not in seen:
        seen.update(scoop_processes_by_host())
        time.sleep(0.1)
    out, err = finish(proc, 300)
    assert proc.returncode == 0, err[-3000:]
    assert HOSTS[1] in seen, seen  # a SCOOP worker ran behind an SSH login to 127.0.0.2
    assert f"on {HOSTS[1]} port" in ssh["log"].read_text()
    assert read_logbook(run_dir) == serial_logbook


@pytest.mark.slow
def test_a_host_killed_mid_run_stops_it_with_one_message_and_resume_finishes(ssh, serial_logbook, tmp_path):
    """The worker on 127.0.0.2 dies as generation 1 begins (in its selection, by a file handshake). SCOOP does
    not recover; which way it fails is a race inside it: either it waits forever for that worker's futures
    and the watchdog stops the run after ``stall_timeout``, or its broker crashes sending work to the dead
    worker ("Host unreachable") and SCOOP abandons the run. Either way: status 1 and one message,
    generation 0 is safe, and ``--resume`` (one process here; any launch works) finishes with the logbook
    of an uninterrupted run. Rarely, SCOOP's broker notices the lost futures and resends them ("Lost track
    of future ... Resending it"): then the run itself finishes, status 0, with that same logbook."""
    run_dir, handshake = tmp_path / "run", tmp_path / "handshake"
    handshake.mkdir()
    select = (f"operators.select={{function: 'test_worker_death:select_after_the_kill', "
              f"kwargs: {{handshake: '{handshake}', tournsize: 2, tolerance: 0.01}}}}")
    args = scoop_args(ssh, run_dir, ("ea.generations", 2), ("runtime.stall_timeout", STALL_TIMEOUT))
    proc = launch(args + ["--set", select])
    try:
        wait_for((handshake / "ready").exists, proc, 240, "generation 1's selection")
        remote = [pid for pid in scoop_processes_by_host().get(HOSTS[1], []) if "--origin" not in cmdline(pid)]
        assert len(remote) == 1, scoop_processes_by_host()
        os.kill(remote[0], signal.SIGKILL)
        wait_for(lambda: is_gone(remote[0]), proc, 30, "the remote worker's death")
        time.sleep(0.5)  # let the broker see the closed connection before generation 1 is sent out
        (handshake / "go").touch()
    finally:
        out, err = finish(proc, STALL_TIMEOUT + 90)
    if proc.returncode == 0 and "Resending it" in err:  # SCOOP recovered on its own: nothing to resume
        assert "error:" not in err and read_logbook(run_dir) == serial_logbook, err[-3000:]
        return
    assert proc.returncode == 1, err[-3000:]
    stalled = (f"error: no evaluation finished for {STALL_TIMEOUT} s, so a SCOOP worker has probably died; "
               "the last finished generation is safe in checkpoints/latest.pkl: continue with --resume")
    abandoned = ("error: SCOOP shut its pool down before learngene_ea.run finished (a worker exited unexpectedly: "
                 "a host died?); what finished is saved: continue a run with --resume <run dir>")
    assert (stalled in err) != (abandoned in err), err[-3000:]
    payload, _ = load_latest_valid(run_dir, warn=lambda *_: None)
    assert payload["generation"] == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), OMP_NUM_THREADS="1")
    resumed = subprocess.run([sys.executable, "-m", "learngene_ea.run", "--resume", str(run_dir), "--quiet",
                              "--trust-module", "test_worker_death:select_after_the_kill"],  # the user's word
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_logbook(run_dir) == serial_logbook
