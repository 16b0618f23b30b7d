#!/usr/bin/python3
"""An SMTP server for lethe's mail tests (tests/delivery_mail.rs), on aiosmtpd (Debian: python3-aiosmtpd).

Listens on 127.0.0.1 on a free port and prints the port on its first stdout line. Every accepted
message is written to DIR as N.json ({mail_from, rcpt_tos, tls, data}), atomically, so the test can
read them while it runs. The reply to RCPT follows DIR/mode, read on every command: "accept" (the
default), "defer" (451) or "reject" (554); the test switches it by writing the file.

--tls none | starttls (STARTTLS offered and required before MAIL) | implicit (TLS from the first
byte), with --cert and --key for the last two. --auth USER:PASSWORD requires that login (PLAIN or
LOGIN, over TLS) before MAIL; the recorded message then names the login it came under. The server exits when its stdin closes, so it never
outlives the test that started it.
"""

import argparse
import asyncio
import itertools
import json
import os
import ssl
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    def mode(self):
        try:
            with open(os.path.join(self.directory, "mode"), encoding="utf-8") as f:
                return f.read().strip() or "accept"
        except FileNotFoundError:
            return "accept"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        mode = self.mode()
        if mode == "defer":
            return "451 4.3.0 Try again later"
        if mode == "reject":
            return "554 5.7.1 Delivery not authorized"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            # STARTTLS sets session.ssl; implicit TLS shows only on the transport.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "login": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        path = os.path.join(self.directory, f"{n}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
        return "250 Message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth")
    args = parser.parse_args()

    def authenticator(server, session, envelope, mechanism, auth_data):
        expected = args.auth.encode().split(b":", 1)
        ok = isinstance(auth_data, LoginPassword) and [auth_data.login, auth_data.password] == expected
        return AuthResult(success=ok, auth_data=auth_data)

    context = None
    if args.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    handler = Recorder(args.directory)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def protocol():
        starttls = context if args.tls == "starttls" else None
        return SMTP(
            handler,
            hostname="localhost",
            tls_context=starttls,
            require_starttls=starttls is not None,
            authenticator=authenticator if args.auth else None,
            auth_required=bool(args.auth),
            # aiosmtpd sees STARTTLS but not a TLS transport it did not start: there, it is TLS anyway.
            auth_require_tls=args.tls == "starttls",
            loop=loop,
        )

    implicit = context if args.tls == "implicit" else None
    server = loop.run_until_complete(loop.create_server(protocol, "127.0.0.1", 0, ssl=implicit))
    print(server.sockets[0].getsockname()[1], flush=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    loop.run_forever()


if __name__ == "__main__":
    main()
