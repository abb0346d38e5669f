"""The spill folder's lock and fork (issue 22, items 3 and 5), from Python:
a second Streamer on a folder in use raises SpillBusyError; in a child forked
while a Streamer is open every call raises ForkedError at once and the
finaliser does not wait for the parent's threads; the parent streams on."""

import os

import pytest

import pyme_streaming
from pyme_streaming import ForkedError, SpillBusyError, SpillFolderError, Streamer


def test_a_second_streamer_on_a_spill_folder_in_use_raises_spill_busy(server, tmp_path):
    spill = tmp_path / "spill"
    first = Streamer(servers=[server.address], spill_dir=str(spill))
    with pytest.raises(SpillBusyError) as raised:
        Streamer(servers=[server.address], spill_dir=str(spill))
    assert isinstance(raised.value, SpillFolderError)
    assert "in use" in str(raised.value)
    first.close()
    Streamer(servers=[server.address], spill_dir=str(spill)).close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this system")
def test_a_forked_child_gets_forked_error_and_the_parent_streams_on(server):
    streamer = Streamer(servers=[server.address])
    for i in range(20):
        streamer.put("py_fork/before%02d" % i, b"x" * 1000)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                streamer.put("py_fork/child", b"c")
            except ForkedError:
                try:
                    streamer.close()
                except ForkedError:
                    own = Streamer(servers=[server.address])
                    own.put("py_fork/own", b"o")
                    own.close()
                    code = 0
            del streamer  # the finaliser: must not wait for the parent's threads
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    for i in range(20):
        streamer.put("py_fork/after%02d" % i, b"y" * 1000)
    streamer.close()
    stored = sorted(p.name for p in (server.root / "py_fork").iterdir())
    assert len([n for n in stored if n.startswith(("before", "after"))]) == 40
    assert "own" in stored and "child" not in stored
