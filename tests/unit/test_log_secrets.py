"""Log output never carries a credential: the values of the secret variables and credential headers of any origin
are scrubbed from every record, at DEBUG too (botocore dumps request headers there)."""

from __future__ import annotations

import io
import logging

from pretrain_trainer.contract import AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
from pretrain_trainer.log_secrets import SecretFilter, redact_secrets, secret_values

BOTOCORE_DEBUG = (
    "Sending http request: <AWSPreparedRequest stream_output=False, method=PUT, url=https://s3.example/b/k, "
    "headers={'User-Agent': b'Boto3/1.35', 'X-Amz-Security-Token': b'IQoJb3JpZ2luX2VjEXAMPLETOKEN', "
    "'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=0123456789abcdef'}>"
)


def test_credential_headers_of_a_botocore_request_dump_are_masked():
    clean = redact_secrets(BOTOCORE_DEBUG, ())
    assert "IQoJb3JpZ2luX2VjEXAMPLETOKEN" not in clean and "0123456789abcdef" not in clean
    assert "AKIAEXAMPLE" not in clean
    assert "url=https://s3.example/b/k" in clean  # the rest of the line stays useful


def test_presigned_query_strings_and_url_userinfo_are_masked():
    text = "GET https://ak:pw-123@s3.example/b/k?X-Amz-Credential=AKIAX%2F1&X-Amz-Signature=beef&partNumber=2"
    clean = redact_secrets(text, ())
    assert "pw-123" not in clean and "beef" not in clean and "AKIAX" not in clean
    assert "partNumber=2" in clean


def test_secret_values_from_the_environment_are_masked_wherever_they_appear():
    env = {AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI-planted", AWS_SESSION_TOKEN: "short"}
    assert secret_values(env) == ("wJalrXUtnFEMI-planted",)  # too short to be a real token: not a pattern
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretFilter(secret_values(env)))
    log = logging.getLogger("test.log_secrets.child")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.debug("credentials: %s", {"secret": "wJalrXUtnFEMI-planted"})
        try:
            raise RuntimeError("signing with wJalrXUtnFEMI-planted failed")
        except RuntimeError:
            log.exception("upload failed")
    finally:
        log.removeHandler(handler)
    assert "wJalrXUtnFEMI-planted" not in stream.getvalue()
    assert "{'secret': '***'}" in stream.getvalue() and "RuntimeError: signing with *** failed" in stream.getvalue()


def test_a_malformed_log_call_is_left_to_the_handler_and_never_raises_at_the_caller(capsys):
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(SecretFilter(("wJalrXUtnFEMI-planted",)))
    log = logging.getLogger("test.log_secrets.malformed")
    log.addHandler(handler)
    log.propagate = False  # pytest's capturing handler would raise on the malformed call by design
    try:
        log.warning("%d steps", "not a number")  # logging's own handleError reports it on stderr
    finally:
        log.removeHandler(handler)
    assert "--- Logging error ---" in capsys.readouterr().err
