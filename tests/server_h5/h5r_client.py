# Drives a data server's HDF5 aggregation with PYME's exact requests (as
# PYME.IO.clusterResults.fileFormattedResults sends them: gzip bodies, the
# `Content-Encoding: gzip` header, PUT) and reads the results back with PyTables and
# PYME's own readers (PYME.IO.h5rFile, PYME.IO.MetaDataHandler.HDFMDHandler).
# Used by tests/server_h5.rs:  python h5r_client.py ADDRESS ROOT CHECK
import gzip, http.client, io, json, os, pickle, sys, threading, time
import numpy as np
import tables

address, root, check = sys.argv[1], sys.argv[2], sys.argv[3]
host, _, port = address.rpartition(":")

DTYPE = np.dtype([("tIndex", "<i4"), ("fitResults", [("x0", "<f4"), ("y0", "<f4")]),
                  ("fitError", [("x0", "<f4"), ("y0", "<f4")]), ("v", "<f4", (2,)),
                  ("s", "S4"), ("flag", "?")])


def rows(start, n):
    a = np.zeros(n, dtype=DTYPE)
    a["tIndex"] = np.arange(start, start + n)
    a["fitResults"]["x0"] = np.arange(start, start + n) * 0.5
    a["fitError"]["y0"] = 1.25
    a["v"][:, 1] = 7
    a["s"] = b"ab"
    a["flag"] = np.arange(n) % 2 == 0
    return a


def request(method, path, body=b"", gzip_body=True):
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {}
    if gzip_body and body:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def put(path, body, **kw):
    return request("PUT", path, body, **kw)[0]


def expect(what, got, want):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}")
        sys.stdout.flush()
        os._exit(1)
    print(f"ok {what}")


def table(path, name):
    with tables.open_file(path) as f:
        return f.get_node("/" + name)[:]


if check == "append":
    path = os.path.join(root, "res", "run.h5r")
    expect("first append", put("/__aggregate_h5r/res/run.h5r/FitResults", rows(0, 5).dumps()), 200)
    expect("second append", put("/__aggregate_h5r/res/run.h5r/FitResults", rows(5, 3).dumps()), 200)
    # np.save format, then JSON records, into other tables.
    b = io.BytesIO(); np.save(b, rows(100, 2)); 
    expect("npy append", put("/__aggregate_h5r/res/run.h5r/Other", b.getvalue()), 200)
    expect("json append", put("/__aggregate_h5r/res/run.h5r/Drift",
                              json.dumps([{"t": 1, "x": 0.5}, {"t": 2, "x": 1.5}]).encode()), 200)
    expect("bytes append", put("/__aggregate_h5r/res/run.h5r/Log", pickle.dumps(b"hello log", 2)), 200)
    md = {"Camera.ADOffset": 100, "Camera.Name": "Andor", "voxelsize.x": 0.07,
          "Analysis.FitModule": "LatGaussFitFR", "Spooler.Empty": "", "Flag": True,
          "Analysis.ROI": [1, 2, 3], "Nested.Dict": {"a": [1.5, "b"]}, "None": None}
    expect("metadata", put("/__aggregate_h5r/res/run.h5r/MetaData", json.dumps(md).encode()), 200)
    # The .hdf spelling, and no gzip.
    expect("hdf append", put("/__aggregate_h5r/res/run.hdf/FitResults", rows(0, 2).dumps(), gzip_body=False), 200)

    # PYME's legacy fit result to the empty table name. The class cannot be imported
    # here (PYME.localization needs scipy with its docs), so the pickle is written with
    # the opcodes protocol 2 gives such an object: NEWOBJ of the class, BUILD of its dict.
    def key(text):
        return b"X" + len(text).to_bytes(4, "little") + text.encode()
    drift = np.zeros(2, dtype=[("tIndex", "<i4"), ("x", "<f4")])
    drift["tIndex"] = [4, 5]
    legacy = (b"\x80\x02cPYME.localization.remFitBuf\nfitResult\n)\x81}(" + key("index") + b"K\x03"
              + key("results") + rows(0, 3).dumps()[2:-1] + key("driftResults") + drift.dumps()[2:-1] + b"ub.")
    expect("legacy fit result", put("/__aggregate_h5r/res/legacy.h5r", legacy), 200)
    expect("legacy FitResults", table(os.path.join(root, "res", "legacy.h5r"), "FitResults").tobytes(), rows(0, 3).tobytes())
    expect("legacy DriftResults", table(os.path.join(root, "res", "legacy.h5r"), "DriftResults").tobytes(), drift.tobytes())
    evil_state = legacy.replace(key("index") + b"K\x03", key("index") + b"cposix\nsystem\n")
    expect("legacy fit result holding os.system", put("/__aggregate_h5r/res/legacy.h5r", evil_state), 400)
    expect("legacy tables untouched", len(table(os.path.join(root, "res", "legacy.h5r"), "FitResults")), 3)

    # PyTables reads it unchanged.
    got = table(path, "FitResults")
    expect("dtype kept exactly", got.dtype, DTYPE)
    expect("rows in order", got.tobytes(), np.concatenate([rows(0, 5), rows(5, 3)]).tobytes())
    expect("npy table", table(path, "Other").tobytes(), rows(100, 2).tobytes())
    d = table(path, "Drift")
    expect("json table", (d["t"].tolist(), d["x"].tolist()), ([1, 2], [0.5, 1.5]))
    with tables.open_file(path) as f:
        expect("bytes table", f.root.Log[:], [b"hello log"])
        expect("table class", f.root.FitResults._v_attrs.CLASS, "TABLE")
        expect("nrows", f.root.FitResults.nrows, 8)
    expect("hdf file", len(table(os.path.join(root, "res", "run.hdf"), "FitResults")), 2)

    # PYME's readers.
    sys.modules.setdefault("sphinx", type(sys)("sphinx"))
    from PYME.IO import MetaDataHandler, h5rFile
    with tables.open_file(path) as f:
        mdh = MetaDataHandler.HDFMDHandler(f)
        for key, value in md.items():
            got_value = mdh.getEntry(key)
            expect(f"metadata {key}", (type(got_value).__name__, got_value) if isinstance(got_value, str) and not isinstance(value, str) else got_value, value)
    h5f = h5rFile.H5RFile(path, "r", keep_alive_timeout=0)
    expect("PYME h5rFile getTableData", len(h5f.getTableData("FitResults", slice(0, None))), 8)
    h5f.wait_close()

    # Reading back over HTTP, as PYME's analysis asks.
    status, body = request("GET", "/res/run.h5r/FitResults.npy?from=2&to=6")
    expect("npy status", status, 200)
    expect("npy slice", np.load(io.BytesIO(body)).tobytes(), got[2:6].tobytes())
    status, body = request("GET", "/res/run.h5r/FitResults.npy?from=6")
    expect("npy from only", np.load(io.BytesIO(body)).tobytes(), got[6:].tobytes())
    status, body = request("GET", "/res/run.h5r/Drift.json")
    expect("json columns", json.loads(body), {"t": {"0": 1, "1": 2}, "x": {"0": 0.5, "1": 1.5}})
    status, body = request("GET", "/res/run.h5r/FitResults.json?to=1")
    cols = json.loads(body)
    expect("json unnested names", sorted(cols), sorted(["tIndex", "fitResults_x0", "fitResults_y0", "fitError_x0", "fitError_y0", "v", "s", "flag"]))
    status, body = request("GET", "/res/run.h5r/Metadata.json")
    expect("metadata json", json.loads(body), md)
    expect("missing table", request("GET", "/res/run.h5r/Nope.npy")[0], 404)

elif check == "refuse":
    path = os.path.join(root, "bad.h5r")

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + os.path.join(root, "pwned"),))
    expect("os.system pickle", put("/__aggregate_h5r/bad.h5r/FitResults", pickle.dumps(Evil(), 2)), 400)
    expect("nothing written", (os.path.exists(path), os.path.exists(os.path.join(root, "pwned"))), (False, False))
    expect("object array", put("/__aggregate_h5r/bad.h5r/FitResults", np.array([object(), 1], dtype=object).dumps()), 400)
    expect("still nothing", os.path.exists(path), False)
    expect("legacy fit-result object", put("/__aggregate_h5r/bad.h5r", pickle.dumps({"results": rows(0, 1)}, 2)), 400)

    expect("good append", put("/__aggregate_h5r/bad.h5r/FitResults", rows(0, 4).dumps()), 200)
    before = open(path, "rb").read()
    other = np.zeros(3, dtype=[("tIndex", "<i4"), ("x", "<f8")])
    expect("mismatched dtype", put("/__aggregate_h5r/bad.h5r/FitResults", other.dumps()), 400)
    expect("table untouched", table(path, "FitResults").tobytes(), rows(0, 4).tobytes())
    expect("file untouched", open(path, "rb").read() == before, True)
    expect("not a record array", put("/__aggregate_h5r/bad.h5r/Plain", np.arange(3.0).dumps()), 400)
    expect("garbage", put("/__aggregate_h5r/bad.h5r/FitResults", b"\x00garbage"), 400)

    # Text files and HDF5 files do not mix.
    expect("text file", put("/__aggregate_txt/notes.txt", b"line\n"), 200)
    expect("h5r op on a text file", put("/__aggregate_h5r/notes.txt.h5r/FitResults", rows(0, 1).dumps()), 200)
    os.rename(os.path.join(root, "notes.txt"), os.path.join(root, "text.h5r"))
    expect("h5r op on text content", put("/__aggregate_h5r/text.h5r/FitResults", rows(0, 1).dumps()), 409)
    expect("txt append to .h5r", put("/__aggregate_txt/bad.h5r", b"x"), 409)
    expect("txt append to .h5", put("/__aggregate_txt/series.h5", b"x"), 409)
    expect("txt append to .hdf", put("/__aggregate_txt/r.hdf", b"x"), 409)
    expect("table untouched at the end", table(path, "FitResults").tobytes(), rows(0, 4).tobytes())

elif check == "concurrent":
    clients, appends, n = 6, 15, 50
    failures = []

    def client(c):
        for i in range(appends):
            start = (c * appends + i) * n
            status = put("/__aggregate_h5r/many.h5r/FitResults", rows(start, n).dumps())
            if status != 200:
                failures.append(status)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    expect("every append answered 200", failures, [])
    got = table(os.path.join(root, "many.h5r"), "FitResults")
    expect("row count", len(got), clients * appends * n)
    # Each append's rows are contiguous and whole.
    starts = got["tIndex"][::n]
    blocks = all((got["tIndex"][k * n:(k + 1) * n] == np.arange(s, s + n)).all() for k, s in enumerate(starts))
    expect("appends whole, never interleaved", (blocks, sorted(got["tIndex"].tolist())), (True, list(range(clients * appends * n))))
elif check == "series":
    # PYME's HDF spooling to a cluster (acquisition_backends, cluster_h5): the parts it
    # sends, built with PYME's own code (PZFFormat, MetaDataHandler, EventLogger's JSON).
    sys.modules.setdefault("sphinx", type(sys)("sphinx"))
    from PYME.IO import MetaDataHandler, PZFFormat, h5File
    mdh = MetaDataHandler.NestedClassMDHandler()
    mdh["Camera.ADOffset"] = 100
    mdh["voxelsize.x"] = 0.1
    mdh["Camera.Name"] = "sim"
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 4000, size=(16, 12)).astype("uint16") for _ in range(4)]
    base = "/__aggregate_h5/acq/series.h5/"
    expect("metadata.json", put(base + "metadata.json", mdh.to_JSON().encode(), gzip_body=False), 200)
    for n, frame in enumerate(frames):
        pzf = PZFFormat.dumps(frame, sequenceID=9, frameNum=n, compression=PZFFormat.DATA_COMP_RAW)
        expect(f"frame {n}", put(base + "frame%05d.pzf" % n, pzf, gzip_body=False), 200)
    again = PZFFormat.dumps(frames[1], sequenceID=9, frameNum=1, compression=PZFFormat.DATA_COMP_RAW)
    expect("a frame sent twice", put(base + "frame00001.pzf", again, gzip_body=False), 200)
    events = [["StartAq", "", 1.5], ["ProtocolFocus", "2, 0.5", 2.25]]
    expect("events.json", put(base + "events.json", json.dumps(events).encode(), gzip_body=False), 200)
    expect("final_metadata.json", put(base + "final_metadata.json", mdh.to_JSON().encode(), gzip_body=False), 200)
    expect("a frame named unlike its header", put(base + "frame00009.pzf", again, gzip_body=False), 400)
    expect("an unknown part", put(base + "other.bin", b"x", gzip_body=False), 400)

    path = os.path.join(root, "acq", "series.h5")
    with tables.open_file(path) as f:
        expect("one row per frame", (f.root.PZFImageData.nrows, f.root.PZFImageIndex.nrows), (4, 4))
        expect("events table", [(e["EventName"], e["Time"]) for e in f.root.Events[:]], [(b"StartAq", 1.5), (b"ProtocolFocus", 2.25)])
    # PYME's reader of cluster .h5 series, on the file.
    h5f = h5File.H5File(path, "r", keep_alive_timeout=0)
    for n, frame in enumerate(frames):
        data, header = PZFFormat.loads(h5f.get_frame(n))
        expect(f"PYME get_frame {n} pixels", np.array_equal(np.asarray(data).squeeze(), frame), True)
    expect("PYME listing", sorted(h5f.get_listing()), sorted(["metadata.json", "events.json"] + ["frame%05d.pzf" % n for n in range(4)]))
    expect("PYME events", json.loads(h5f.get_file("events.json")), events)
    expect("PYME metadata", json.loads(h5f.get_file("metadata.json"))["Camera.ADOffset"], 100)
    h5f.wait_close()

    # Served as a folder.
    status, body = request("GET", "/acq/series.h5/")
    expect("listing", (status, sorted(json.loads(body))), (200, sorted(["metadata.json", "events.json"] + ["frame%05d.pzf" % n for n in range(4)])))
    for n, frame in enumerate(frames):
        status, body = request("GET", "/acq/series.h5/frame%05d.pzf" % n)
        data, header = PZFFormat.loads(body)
        expect(f"GET frame {n}", (status, np.array_equal(np.asarray(data).squeeze(), frame)), (200, True))
    status, body = request("GET", "/acq/series.h5/events.json")
    expect("GET events", (status, json.loads(body)), (200, events))
    status, body = request("GET", "/acq/series.h5/metadata.json")
    md = json.loads(body)
    expect("GET metadata", (status, md["Camera.ADOffset"], md["voxelsize.x"], md["Camera.Name"]), (200, 100, 0.1, "sim"))
    expect("GET missing frame", request("GET", "/acq/series.h5/frame00099.pzf")[0], 404)
    status, body = request("GET", "/acq/")
    expect("parent listing shows the file", "series.h5" in json.loads(body), True)
elif check == "crash":
    # kill -9 during appends, many times at random moments; after each restart PyTables
    # opens the file and every row answered 200 is there. ADDRESS is the pyme-stream
    # program here: this check starts and kills its own servers.
    import random, signal, subprocess
    program, path = address, os.path.join(root, "crash.h5r")
    n, stored = 500, 0
    for attempt in range(20):
        server = subprocess.Popen([program, "serve", "--root", root, "--port", "0", "--advertise", "none"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        host, port = server.stdout.readline().decode().split()[-1].rsplit(":", 1)
        answered = [0]

        def appender():
            try:
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                for k in range(10**6):
                    conn.request("PUT", "/__aggregate_h5r/crash.h5r/FitResults", body=rows(stored + answered[0] * n, n).dumps())
                    r = conn.getresponse(); r.read()
                    if r.status != 200:
                        return
                    answered[0] += 1
            except (OSError, http.client.HTTPException):
                pass
        t = threading.Thread(target=appender)
        t.start()
        time.sleep(random.uniform(0.02, 0.3))
        server.send_signal(signal.SIGKILL)
        server.wait()
        t.join()
        stored += answered[0] * n
        got = table(path, "FitResults") if os.path.exists(path) else np.zeros(0, dtype=DTYPE)
        # Every answered row is there, in order; at most one unanswered append more.
        ok = len(got) >= stored and (got["tIndex"][:stored] == np.arange(stored)).all()
        expect(f"kill {attempt}: {stored} answered rows in the file", (bool(ok), len(got) - stored in (0, n)), (True, True))
        stored = len(got)
elif check == "pyme_client":
    # PYME's own client code (clusterResults.fileResults: the formatting and the PUT of
    # PYME's analysis) against a server this check starts. Run inside a network
    # namespace with only loopback (clusterIO imports PYME's discovery).
    import subprocess
    sys.modules.setdefault("sphinx", type(sys)("sphinx"))
    from PYME.IO import MetaDataHandler, clusterResults, h5rFile
    server = subprocess.Popen([address, "serve", "--root", root, "--port", "0", "--advertise", "none"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        host, _, port = server.stdout.readline().decode().split()[-1].rpartition(":")
        uri = "http://%s:%s/__aggregate_h5r/pyme/run.h5r" % (host, port)
        mdh = MetaDataHandler.NestedClassMDHandler()
        mdh["Camera.ADOffset"] = 100
        mdh["Analysis.FitModule"] = "LatGaussFitFR"
        clusterResults.fileResults(uri + "/MetaData", mdh)
        clusterResults.fileResults(uri + "/FitResults", rows(0, 7))
        clusterResults.fileResults(uri + "/FitResults", rows(7, 5))
        clusterResults.fileResults(uri + "/DriftResults", rows(0, 2))
        path = os.path.join(root, "pyme", "run.h5r")
        expect("PYME's fileResults rows", table(path, "FitResults").tobytes(), np.concatenate([rows(0, 7), rows(7, 5)]).tobytes())
        expect("PYME's fileResults second table", len(table(path, "DriftResults")), 2)
        with tables.open_file(path) as f:
            md = MetaDataHandler.HDFMDHandler(f)
            expect("PYME's fileResults metadata", (md.getEntry("Camera.ADOffset"), md.getEntry("Analysis.FitModule")), (100, "LatGaussFitFR"))
        refused = None
        try:
            clusterResults.fileResults(uri + "/FitResults", np.zeros(2, dtype=[("other", "<f8")]))
        except RuntimeError as e:
            refused = str(e)
        expect("PYME's client sees the refusal", refused is not None and "400" in refused, True)
    finally:
        server.kill()
        server.wait()
print("ALL OK", flush=True)
# PYME's modules leave threads behind (its h5rFile poll thread): do not wait for them.
os._exit(0)
