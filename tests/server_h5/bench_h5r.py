# h5r append throughput: N appends of 10,000-row record arrays (PYME's fit-result
# layout), sent as PYME's clusterResults sends them (gzip, ndarray.dumps()), by C
# clients at once; the clock stops when every row is readable in the file with PyTables
# (PYME's server answers before it writes: its rows land later).
#   python bench_h5r.py ADDRESS FILE_ON_DISK [APPENDS] [CLIENTS]
import gzip, http.client, sys, threading, time
import numpy as np
import tables

address, path = sys.argv[1], sys.argv[2]
appends = int(sys.argv[3]) if len(sys.argv) > 3 else 40
clients = int(sys.argv[4]) if len(sys.argv) > 4 else 1
host, port = address.rsplit(":", 1)
fit = [(n, "<f4") for n in ("A", "x0", "y0", "sigma", "background", "bx", "by")]
dtype = np.dtype([("tIndex", "<i4"), ("fitResults", fit), ("fitError", fit),
                  ("resultCode", "<i4"), ("slicesUsed", [("x", [("start", "<i4"), ("stop", "<i4"), ("step", "<i4")]), ("y", [("start", "<i4"), ("stop", "<i4"), ("step", "<i4")])]),
                  ("subtractedBackground", "<f4"), ("nchi2", "<f4")])
rows = np.zeros(10000, dtype=dtype)
rows["tIndex"] = np.arange(10000)
rows["fitResults"]["x0"] = np.random.default_rng(1).normal(size=10000)
body = gzip.compress(rows.dumps())
name = path.rsplit("/", 1)[-1]


def client(k):
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    for _ in range(appends // clients):
        conn.request("PUT", "/__aggregate_h5r/%s/FitResults" % name, body=body,
                     headers={"Content-Encoding": "gzip"})
        r = conn.getresponse(); r.read()
        assert r.status == 200, r.status


start = time.perf_counter()
threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
[t.start() for t in threads]
[t.join() for t in threads]
answered = time.perf_counter() - start
want = (appends // clients) * clients * 10000
while True:
    try:
        with tables.open_file(path) as f:
            if f.root.FitResults.nrows >= want:
                break
    except Exception:
        pass
    time.sleep(0.01)
done = time.perf_counter() - start
print(f"rows {want} itemsize {dtype.itemsize} clients {clients}: last 200 after {answered:.2f} s, "
      f"all rows readable after {done:.2f} s: {want / done:.0f} rows/s")
