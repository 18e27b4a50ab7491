"""A mail server for the e-mailed extraction tests: aiosmtpd on 127.0.0.1 (a free port), writing each
message it takes to OUT_DIR/<n>.json as {"from", "to", "subject", "attachments": [{"filename",
"content_type", "base64"}]}. Prints "smtp listening on <port>" once it accepts connections; runs until
killed.

Usage: python3 smtp_sink.py OUT_DIR
"""

import base64
import email
import email.policy
import json
import os
import socket
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        attachments = [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "base64": base64.b64encode(part.get_payload(decode=True)).decode(),
            }
            for part in message.iter_attachments()
        ]
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "attachments": attachments,
        }
        self.count += 1
        path = os.path.join(self.out_dir, f"{self.count}.json")
        with open(path + ".part", "w") as file:
            json.dump(record, file)
        os.replace(path + ".part", path)
        return "250 Message accepted for delivery"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    out_dir = sys.argv[1]
    port = free_port()
    controller = Controller(Sink(out_dir), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"smtp listening on {port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
