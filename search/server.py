"""Start a vLLM server on a checkpoint for other processes (sweeps, launchers, replicas) to share.

    python -m search.server tiny-policy --port 8000        # or: lab serve tiny-policy --port 8000

Prints the base URL and the overrides that point a run at it; serves until Ctrl-C or SIGTERM. Unknown flags go to
vLLM. The server itself is ``search.serving.vllm_server.ManagedServer``.
"""
from __future__ import annotations

import argparse
import signal
import sys

from search.contracts import LabError
from search.serving.vllm_server import ManagedServer


def main(argv: list[str] | None = None) -> int:
    """CLI: start a server, print its base URL, serve until Ctrl-C or SIGTERM. Unknown flags go to vLLM."""
    ap = argparse.ArgumentParser(prog="python -m search.server", description=main.__doc__)
    ap.add_argument("model_path", help="Hugging Face checkpoint directory")
    ap.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--served-model-name", default=None, help="model name for clients (default: directory name)")
    ap.add_argument("--max-model-len", type=int, default=None)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--log-path", default=None, help="log file or directory (default: a temporary file)")
    args, extra = ap.parse_known_args(argv)
    server = ManagedServer(args.model_path, served_model_name=args.served_model_name, port=args.port,
                           max_model_len=args.max_model_len, dtype=args.dtype, extra_args=tuple(extra),
                           log_path=args.log_path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start()
        print(f"{server.base_url} model={server.served_model_name} log={server.log_path}", flush=True)
        print(f"use it with: policy=remote policy.base_urls=[{server.base_url}] "
              f"policy.model={server.served_model_name} policy.checkpoint={server.model_path}", flush=True)
        code = server._proc.wait()
        print(f"error: vLLM server exited with code {code}; see {server.log_path}", file=sys.stderr)
        return 1
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
