"""Run localstripe's aiohttp app on 127.0.0.1 only.

    python scripts/localstripe_serve.py --dir=DIR [--port=PORT]

localstripe's own CLI (`localstripe --port N`) binds [::]:N, i.e. every
interface; tests must listen on loopback only, so this launcher imports
localstripe's `app` and serves it on a socket it binds itself to 127.0.0.1.
With --port 0 (the default) the kernel picks a free port, so there is no race
between choosing a port and binding it.

Once the socket is bound it writes the port to DIR/port (atomically); the
server may take a few more milliseconds to accept connections, so callers
should still poll it. Logs (access log and webhook deliveries) go
to stderr. SIGTERM/SIGINT stop it cleanly.

localstripe also pickles its whole store to the fixed path
/tmp/localstripe.pickle after every write (shared by every instance on the
machine, and O(store size) per request); that is turned off here, and the
store always starts empty.

Run it with the interpreter of the venv that `scripts/localstripe.sh install`
creates.
"""

import argparse
import logging
import os
import socket
import sys

HOST = "127.0.0.1"  # loopback only, never 0.0.0.0 / [::]


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="where to write the port file")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    args = parser.parse_args()

    from aiohttp import web
    from localstripe import resources, server

    resources.Store.dump_to_disk = lambda self: None

    logger = logging.getLogger("aiohttp.access")
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, args.port))
    port = sock.getsockname()[1]

    write_atomically(os.path.join(args.dir, "port"), "%d\n" % port)

    web.run_app(
        server.app,
        sock=sock,
        access_log=logger,
        print=lambda msg: print(msg, file=sys.stderr, flush=True),
    )


if __name__ == "__main__":
    main()
