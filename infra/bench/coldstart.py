#!/usr/bin/env python3
"""Cold start of a release Lambda binary, to its first response.

A minimal Lambda runtime API (the part a custom runtime talks to) serves one
event; the binary is started fresh each round and timed from process start
to the moment it posts its response. The time to its first poll for an
event is reported too: that is Lambda's "Init Duration", the part of a cold
start that is the binary's own (the rest is the handler's work, here mostly
round trips to the emulators). Peak RSS is read from /proc before the
process is stopped.

    infra/bench/coldstart.py FUNCTION FIXTURE [--rounds N] [--env K=V,K=V] [--batch N]

--batch N turns an SQS fixture into a batch of N messages (each its own
message id, FIFO group and event id), for peak RSS on a large batch.

FUNCTION is a folder under target/lambda/ (cargo lambda build --release);
FIXTURE a file under tests/events/lambda/. Point AWS_ENDPOINT_URL_* at the
emulators when the function talks to DynamoDB or SQS.
"""
import argparse, json, os, statistics, subprocess, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def serve(event: bytes):
    state = {"served": False, "polled_at": None, "response_at": None, "body": None, "error": None}

    class Runtime(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.endswith("/invocation/next") and not state["served"]:
                state["served"] = True
                state["polled_at"] = time.perf_counter()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "cold-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Length", str(len(event)))
                self.end_headers()
                self.wfile.write(event)
            else:
                time.sleep(30)  # no second event: hold the poll

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            if "/response" in self.path:
                state["response_at"] = time.perf_counter()
                state["body"] = body
            elif "/error" in self.path:
                state["error"] = body
                state["response_at"] = time.perf_counter()
            self.send_response(202)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def peak_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None


def batch_of(event: bytes, n: int, tag: str = "") -> bytes:
    """The fixture's first record, n times over, each one new (`tag` makes
    them new again in another round): an SQS record gets its own message
    id, FIFO group and event id, a stream record its own event id (the
    monitor marks a batch by them). An HTTP event is left as it is."""
    e = json.loads(event)
    if not isinstance(e.get("Records"), list):
        return event
    template = e["Records"][0]
    records = []
    for i in range(n):
        r = json.loads(json.dumps(template))
        if "body" not in r:
            r["eventID"] = f'{r.get("eventID", "e")}-{tag}{i}'
            records.append(r)
            continue
        r["messageId"] = f"m-{tag}{i}"
        r.setdefault("attributes", {})["MessageGroupId"] = f"g-{tag}{i}"
        body = json.loads(r["body"])
        if isinstance(body.get("event"), dict):
            body["event"]["id"] = f'{body["event"]["id"]}-{tag}{i}'
        elif "id" in body:
            body["id"] = f'{body["id"]}-{tag}{i}'
        r["body"] = json.dumps(body)
        records.append(r)
    e["Records"] = records
    return json.dumps(e).encode()


def cpu_ms(pid):
    """CPU time the process has used, every thread's, from schedstat (ns)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e6


def one_round(binary, event, extra_env):
    server, state = serve(event)
    env = dict(os.environ, **extra_env)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench", "RUST_LOG": "warn",
    })
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while state["response_at"] is None and proc.poll() is None and time.perf_counter() - start < 300:
        time.sleep(0.0005)
    rss = peak_rss_kb(proc.pid)
    cpu = cpu_ms(proc.pid) if proc.poll() is None else None
    proc.kill()
    proc.wait()
    server.shutdown()
    if state["response_at"] is None:
        raise SystemExit(f"no response: {proc.stderr.read().decode()[-2000:]}")
    return ((state["polled_at"] - start) * 1000, (state["response_at"] - start) * 1000,
            cpu, rss, state["body"], state["error"])


def summary(answer):
    """A batch answer is long: say how many of it failed."""
    if isinstance(answer, dict) and len(answer.get("batchItemFailures", [])) > 5:
        return {"batchItemFailures": len(answer["batchItemFailures"])}
    return answer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("function")
    p.add_argument("fixture")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--env", default="")
    p.add_argument("--batch", type=int, default=0)
    a = p.parse_args()
    binary = os.path.join(ROOT, "target/lambda", a.function, "bootstrap")
    event = open(os.path.join(ROOT, "tests/events/lambda", a.fixture), "rb").read()
    extra = dict(kv.split("=", 1) for kv in a.env.split(",") if kv)
    inits, times, cpus, rss, last = [], [], [], [], None
    for n in range(a.rounds):
        # Each round new events, so none is answered as a duplicate.
        fresh = batch_of(event, a.batch or 1, f"r{n}-{time.time_ns()}-")
        init, ms, cpu, kb, body, err = one_round(binary, fresh, extra)
        if err:
            raise SystemExit(f"the function answered an error: {err.decode()}")
        inits.append(init)
        times.append(ms)
        cpus.append(cpu or 0)
        rss.append(kb or 0)
        last = body
    size = os.path.getsize(binary)
    spread = lambda xs: {"median": round(statistics.median(xs), 1),
                         "min": round(min(xs), 1), "max": round(max(xs), 1)}
    print(json.dumps({
        "function": a.function, "fixture": a.fixture, "rounds": a.rounds,
        "init_to_first_poll_ms": spread(inits),
        "cold_start_to_first_response_ms": spread(times),
        # The binary's own share of it; the rest is waiting on its calls.
        "cpu_to_first_response_ms": spread(cpus),
        "peak_rss_mb": round(max(rss) / 1024, 1), "binary_bytes": size,
        "batch": a.batch or None,
        "answer": summary(json.loads(last)) if last else None,
    }, indent=2))


if __name__ == "__main__":
    main()
