"""Structured logs never carry a secret, whatever path it takes into a message."""
from __future__ import annotations

import base64
import io
import json
import logging

from imageclone_controller.log import Redactor, fields, setup_logging

SECRET = "pa$$word/with:special&chars"


def capture(fmt: str):
    stream = io.StringIO()
    setup_logging(fmt, secrets=[SECRET], username="bob", stream=stream)
    return stream


def test_json_lines_with_fields_and_no_secret():
    stream = capture("json")
    log = logging.getLogger("imageclone.test")
    log.info("copied %s", "nginx", extra=fields(key="Deployment/a/b", attempt=2, msg="shadowed"))
    log.warning("registry said: bad password %s", SECRET)
    try:
        raise RuntimeError(f"Authorization: Basic {base64.b64encode(f'bob:{SECRET}'.encode()).decode()}")
    except RuntimeError:
        log.exception("request failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "copied nginx" and lines[0]["key"] == "Deployment/a/b" and lines[0]["attempt"] == 2
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "imageclone.test" and lines[0]["ts"].endswith("Z")
    assert lines[0]["field_msg"] == "shadowed"
    text = stream.getvalue()
    assert SECRET not in text and "***" in lines[1]["msg"]
    assert base64.b64encode(f"bob:{SECRET}".encode()).decode() not in text
    assert "RuntimeError" in lines[2]["error"]


def test_text_format_redacts_too():
    stream = capture("text")
    logging.getLogger("imageclone.test").info("x", extra=fields(password=SECRET))
    assert SECRET not in stream.getvalue() and 'password="***"' in stream.getvalue()


def test_redactor_masks_encoded_forms():
    redact = Redactor([SECRET])
    for form in (SECRET, json.dumps(SECRET)[1:-1], "pa%24%24word%2Fwith%3Aspecial%26chars"):
        assert redact(f"<{form}>") == "<***>"
    assert Redactor(["abc"])("abc") == "abc"  # too short to mask without mangling everything
