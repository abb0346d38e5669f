"""Drives the real MMCore (pymmcore) with the PymeStreaming adapter and the test camera
for tests/micromanager.rs: one scenario per run, its results as one JSON line.

    python driver.py <adapter dir> <scenario> <json arguments>
"""
import json
import os
import sys
import time

import pymmcore


def expected(n, width, height, bits):
    """Frame n of the test camera as rows (y) of pixels (x), as PymeTestCamera makes it."""
    mask = (1 << bits) - 1
    return [[(7 * x + 131 * y + 1009 * n) & mask for x in range(width)] for y in range(height)]


def core(adapters, args):
    c = pymmcore.CMMCore()
    c.setDeviceAdapterSearchPaths([adapters])
    c.loadDevice("Camera", "PymeTestCamera", "PymeTestCamera")
    c.loadDevice("Streamer", "PymeStreaming", "PymeStreamer")
    c.initializeAllDevices()
    c.setCameraDevice("Camera")
    c.setImageProcessorDevice("Streamer")
    c.setProperty("Camera", "PixelType", "%dbit" % args.get("bits", 16))
    c.setProperty("Camera", "Width", str(args.get("width", 96)))
    c.setProperty("Camera", "Height", str(args.get("height", 64)))
    c.setProperty("Camera", "FrameIntervalUs", str(args.get("interval_us", 0)))
    c.setProperty("Streamer", "Servers", args["servers"])
    for key in ("Compression", "QueueFullPolicy", "Distribution", "SpillFolder", "QueueWaitMs", "BufferMB"):
        if key in args:
            c.setProperty("Streamer", key, str(args[key]))
    return c


def streaming(adapters, args):
    """A core whose streamer has opened the series args["series"][0] (Streaming 1);
    args["circular_mb"] sizes MMCore's circular buffer first."""
    c = core(adapters, args)
    if "circular_mb" in args:
        c.setCircularBufferMemoryFootprint(args["circular_mb"])
    c.setProperty("Streamer", "SeriesName", args["series"][0])
    c.setProperty("Streamer", "Streaming", "1")
    return c


def end_series(c, result):
    """Streaming 0 (an error, when frames failed, goes to result["stop_error"]: the
    counters say how many), the final counters, and the devices unloaded."""
    try:
        c.setProperty("Streamer", "Streaming", "0")
    except Exception as e:
        result["stop_error"] = str(e)
    result["final"] = counters(c)
    c.unloadAllDevices()


def counters(c):
    return {k: int(c.getProperty("Streamer", k)) for k in
            ("FramesAcknowledged", "FramesFailed", "FramesInFlight", "FramesDropped", "ServersUp",
             "FramesWaited")}


def sequence(c, args, series, frames):
    c.setProperty("Streamer", "SeriesName", series)
    c.setProperty("Streamer", "Streaming", "1")
    up = int(c.getProperty("Streamer", "ServersUp"))
    c.startSequenceAcquisition(frames, 0.0, True)
    popped_ok = 0
    popped = 0
    width, height, bits = args.get("width", 96), args.get("height", 64), args.get("bits", 16)
    while c.isSequenceRunning() or c.getRemainingImageCount() > 0:
        if c.getRemainingImageCount() > 0:
            img = c.popNextImage()
            if popped < 3:
                popped_ok += int(img.tolist() == expected(popped, width, height, bits))
            popped += 1
        else:
            time.sleep(0.001)
    c.setProperty("Streamer", "Streaming", "0")
    out = counters(c)
    out.update(series=c.getProperty("Streamer", "CurrentSeries"), popped=popped, popped_ok=popped_ok,
               process_us=c.getProperty("Streamer", "ProcessTimeUs"),
               servers_up_at_start=up)
    return out


def main():
    adapters, scenario, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    result = {}
    if scenario == "sequences":
        c = core(adapters, args)
        result["runs"] = [sequence(c, args, s, args["frames"]) for s in args["series"]]
        c.unloadAllDevices()
    elif scenario == "stop_during":
        # The camera runs until stopped, so Streaming 0 comes mid-sequence by order.
        c = streaming(adapters, args)
        c.startContinuousSequenceAcquisition(0.0)
        while int(c.getProperty("Streamer", "FramesAcknowledged")) < args["stop_after"]:
            time.sleep(0.005)
        c.setProperty("Streamer", "Streaming", "0")
        result["after_stop"] = counters(c)
        result["camera_ran_on"] = c.isSequenceRunning()
        time.sleep(0.3)  # frames go on arriving; none may be streamed
        c.stopSequenceAcquisition()
        result["final"] = counters(c)
        c.unloadAllDevices()
    elif scenario == "kill_server":
        # The camera runs until stopped: the server args["kill_pid"] is killed once
        # args["kill_after"] frames are acknowledged, and the camera is stopped only
        # once as many more are acknowledged (so the kill is mid-sequence by order).
        c = streaming(adapters, args)
        c.startContinuousSequenceAcquisition(0.0)
        while int(c.getProperty("Streamer", "FramesAcknowledged")) < args["kill_after"]:
            time.sleep(0.002)
        os.kill(args["kill_pid"], 9)
        while int(c.getProperty("Streamer", "FramesAcknowledged")) < 2 * args["kill_after"]:
            time.sleep(0.002)
        c.stopSequenceAcquisition()
        c.setProperty("Streamer", "Streaming", "0")
        result = counters(c)
        c.unloadAllDevices()
    elif scenario == "outage":
        # Every server down at Streaming 1: frames spill; args["marker"] is written once
        # the sequence is over (the test then starts the server), and Streaming 0 is set
        # once a server is up: the spilled series drains.
        c = streaming(adapters, args)
        result["servers_up_at_start"] = int(c.getProperty("Streamer", "ServersUp"))
        c.startSequenceAcquisition(args["frames"], 0.0, True)
        while c.isSequenceRunning():
            time.sleep(0.01)
        result["during"] = counters(c)
        open(args["marker"], "w").close()
        deadline = time.time() + 60
        while int(c.getProperty("Streamer", "ServersUp")) < 1 and time.time() < deadline:
            time.sleep(0.05)
        c.setProperty("Streamer", "Streaming", "0")
        result["final"] = counters(c)
        c.unloadAllDevices()
    elif scenario == "outage_then_up":
        # Every server down at Streaming 1 and the camera running on: once
        # args["spilled"] frames went to the spill folder, args["marker"] is written
        # (the test then starts the server) and the camera goes on while the folder
        # drains, until args["after"] frames more are acknowledged (or 60 s).
        c = streaming(adapters, args)
        c.startContinuousSequenceAcquisition(0.0)
        while int(c.getProperty("Streamer", "FramesInFlight")) < args["spilled"]:
            time.sleep(0.005)
        result["at_marker"] = counters(c)
        open(args["marker"], "w").close()
        deadline = time.time() + 60
        while (int(c.getProperty("Streamer", "FramesAcknowledged")) < args["spilled"] + args["after"]
               and time.time() < deadline):
            time.sleep(0.01)
        c.stopSequenceAcquisition()
        result["during"] = counters(c)
        end_series(c, result)
    elif scenario == "queue_full":
        # The only server is stopped (SIGSTOP) during the sequence: the pool of
        # prepared buffers runs out and the policy decides; then it is resumed.
        import signal
        c = streaming(adapters, args)
        os.kill(args["pid"], signal.SIGSTOP)
        t0 = time.time()
        c.startSequenceAcquisition(args["frames"], 0.0, True)
        while c.isSequenceRunning():
            time.sleep(0.01)
        result["sequence_s"] = time.time() - t0
        result["during"] = counters(c)
        os.kill(args["pid"], signal.SIGCONT)
        end_series(c, result)
    elif scenario == "bad_values":
        c = core(adapters, args)
        errors = {}
        # pymmcore's exception carries MMCore's message only; the device's own text
        # goes to the core log too (LogMessage), where users and this test read it.
        log = args["log"]
        c.setPrimaryLogFile(log)

        def attempt(key, prop, value):
            try:
                c.setProperty("Streamer", prop, value)
                errors[key] = None
            except Exception as e:  # MMCore's CMMError
                errors[key] = str(e)
        attempt("servers_no_port", "Servers", "localhost")
        attempt("servers_bad_port", "Servers", "localhost:99999")
        attempt("servers_comma", "Servers", "a:1,b:2")
        attempt("compression", "Compression", "zstd")
        attempt("distribution", "Distribution", "random")
        attempt("streaming", "Streaming", "2")
        attempt("wait", "QueueWaitMs", "-5")
        result["servers_kept"] = c.getProperty("Streamer", "Servers")
        c.setProperty("Streamer", "Servers", args["dead"])
        attempt("start_dead", "Streaming", "1")
        result["streaming_after_dead"] = c.getProperty("Streamer", "Streaming")
        c.setProperty("Streamer", "Servers", "")
        attempt("start_no_servers", "Streaming", "1")
        c.setProperty("Streamer", "Servers", args["servers"])
        c.setProperty("Streamer", "Streaming", "1")
        attempt("servers_while_streaming", "Servers", args["servers"])
        c.setProperty("Streamer", "Streaming", "0")
        result["errors"] = errors
        c.unloadAllDevices()
        c.setPrimaryLogFile("")
        with open(log, errors="replace") as f:
            result["log"] = f.read()
    elif scenario == "load_unload":
        threads = lambda: len(os.listdir("/proc/self/task"))
        before = None
        for i in range(10):
            c = core(adapters, args)
            c.setProperty("Streamer", "SeriesName", "%s_%d" % (args["series"][0], i))
            c.setProperty("Streamer", "Streaming", "1")
            c.startSequenceAcquisition(20, 0.0, True)
            while c.isSequenceRunning():
                time.sleep(0.005)
            if i % 2 == 0:
                c.setProperty("Streamer", "Streaming", "0")  # odd rounds: unloaded while streaming
            c.unloadAllDevices()
            del c
            if before is None:
                before = threads()
        time.sleep(0.2)
        result = {"threads_after_first": before, "threads_after_last": threads()}
    elif scenario == "bench":
        # InsertImage and Process() times at 2048x2048x16-bit, 100 frames/s, with and
        # without the streamer (benches/micromanager_process.sh). "reader": "all" pops
        # every frame into Python (as a program saving every frame itself would);
        # "display" copies the newest frame 30 times a second, as a live view does, and
        # lets the circular buffer wrap.
        args.update(width=2048, height=2048, bits=16, interval_us=10000)
        reader = args.get("reader", "all")
        c = core(adapters, args)
        c.setCircularBufferMemoryFootprint(2048)
        for mode in ("without", "with"):
            c.setImageProcessorDevice("Streamer" if mode == "with" else "")
            if mode == "with":
                c.setProperty("Streamer", "SeriesName", args["series"][0])
                c.setProperty("Streamer", "Streaming", "1")
            c.startSequenceAcquisition(args["frames"], 0.0, False)
            shown = 0
            while c.isSequenceRunning():
                if reader == "all":
                    while c.getRemainingImageCount() > 0:
                        c.popNextImage()
                    time.sleep(0.005)
                else:
                    if c.getRemainingImageCount() > 0:
                        c.getLastImage()
                        shown += 1
                    time.sleep(1 / 30)
            c.clearCircularBuffer()
            result[mode] = c.getProperty("Camera", "InsertTimesUs")
            result[mode + "_shown"] = shown
            if mode == "with":
                c.setProperty("Streamer", "Streaming", "0")
                result["counters"] = counters(c)
                result["process_us"] = c.getProperty("Streamer", "ProcessTimeUs")
        c.unloadAllDevices()
    elif scenario == "cluster_read":
        result = cluster_read(args)
    elif scenario == "pyme_read":
        # PYME's own reader is the judge of the orientation: [x, y] of the camera image.
        from PYME.IO import PZFFormat
        import numpy as np
        width, height, bits = args["width"], args["height"], args["bits"]
        checked = 0
        for path, n in args["frames"]:
            with open(path, "rb") as f:
                data, header = PZFFormat.loads(f.read())
            want = np.array(expected(n, width, height, bits)).T  # [x, y]
            assert data.shape[:2] == (width, height), data.shape
            assert data.dtype == (np.uint8 if bits == 8 else np.uint16), data.dtype
            assert (data[:, :, 0] == want).all(), path
            checked += 1
        result = {"checked": checked}
    print(json.dumps(result))


def cluster_read(args):
    """PYME's cluster data source reads a series back from our servers (started here
    over the roots the sequence filled, found through PYME's local registry). Only
    inside a network namespace with only lo: PYME's clusterIO starts zeroconf."""
    import subprocess
    import numpy as np
    procs = []
    try:
        for root in args["roots"]:
            proc = subprocess.Popen(
                [args["bin"], "serve", "--root", root, "--serverfilter", args["cluster"],
                 "--port", "0", "--advertise", "local"],
                stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            line = proc.stdout.readline()
            assert line.startswith("listening on "), line
        from PYME.IO.DataSources.ClusterPZFDataSource import DataSource
        width, height, bits = args["width"], args["height"], args["bits"]
        source = DataSource("PYME-CLUSTER://%s/%s" % (args["cluster"], args["series"]))
        frames = source.getNumSlices()
        same = 0
        for n in range(frames):
            frame = source.getSlice(n)
            want = np.array(expected(n, width, height, bits)).T  # [x, y]
            same += int(frame.shape[:2] == (width, height)
                        and frame.dtype == (np.uint8 if bits == 8 else np.uint16)
                        and (frame.reshape(width, height) == want).all())
        md = source.getMetadata()
        complete = source.is_complete  # a property in PYME 26.9
        complete = complete() if callable(complete) else complete
        return {"frames": frames, "same": same, "complete": bool(complete),
                "width": int(md["Camera.ImageWidth"]), "height": int(md["Camera.ImageHeight"]),
                "events": len(source.getEvents())}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
