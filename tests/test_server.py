"""The server's safety rules: loopback by default, a password for anything wider, checked on every request."""

import asyncio
import base64

import pytest

from rag import server
from rag.errors import ConfigError


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.20", False),
                                            ("::", False), ("example.org", False)])
def test_only_this_machine_counts_as_loopback(host, loopback):
    assert server.is_loopback(host) is loopback


def test_listening_beyond_this_machine_needs_a_password():
    server.check_exposure("127.0.0.1", None)
    server.check_exposure("0.0.0.0", ("alice", "secret"))
    with pytest.raises(ConfigError, match=r"--host 0\.0\.0\.0.*--auth USER:PASSWORD"):
        server.check_exposure("0.0.0.0", None)


@pytest.mark.parametrize("bad", ["alice", "alice:", ":secret"])
def test_a_malformed_auth_value_is_named_without_echoing_the_password(bad):
    with pytest.raises(ConfigError, match="USER:PASSWORD") as refused:
        server.parse_auth(bad)
    assert "secret" not in str(refused.value)
    assert server.parse_auth("alice:pa:ss") == ("alice", "pa:ss")
    assert server.parse_auth("") is None


def _call(middleware, scope):
    sent = []

    async def inner(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message):
        sent.append(message)

    middleware.app = inner
    asyncio.run(middleware(scope, None, send))
    return sent


def _scope(authorization=None, kind="http"):
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return {"type": kind, "path": "/doc/abc", "headers": headers}


def test_every_request_without_the_right_password_is_refused():
    guard = server.BasicAuth(None, ("alice", "secret"))
    good = "Basic " + base64.b64encode(b"alice:secret").decode()
    wrong = "Basic " + base64.b64encode(b"alice:guess").decode()
    assert _call(guard, _scope(good))[0]["status"] == 200
    for refused in (None, wrong, "Bearer secret", "Basic !!!"):
        reply = _call(guard, _scope(refused))
        assert reply[0]["status"] == 401
        assert (b"www-authenticate", b'Basic realm="Chat with your documents", charset="UTF-8"') in reply[0]["headers"]
    assert _call(guard, _scope(None, "websocket")) == [{"type": "websocket.close", "code": 1008}]
    assert _call(guard, {"type": "lifespan"})[0]["status"] == 200  # server start-up is not a request


def test_several_logins_each_get_in_and_are_told_apart():
    logins = server.parse_logins(["alice:first secret", "bob:second"])
    assert logins == [("alice", "first secret"), ("bob", "second")]
    assert server.parse_logins(["alice:a\nbob:b\n"], "RAG_AUTH") == [("alice", "a"), ("bob", "b")]
    with pytest.raises(ConfigError, match="'alice' twice"):
        server.parse_logins(["alice:a", "alice:b"])
    guard = server.BasicAuth(None, logins)
    for user, password in logins:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        assert guard.allowed([(b"authorization", f"Basic {token}".encode())])
        assert server.login_of({"authorization": f"Basic {token}"}) == user
    wrong = base64.b64encode(b"alice:second").decode()  # bob's password does not open alice's login
    assert not guard.allowed([(b"authorization", f"Basic {wrong}".encode())])
    assert server.login_of({}) == "" and server.login_of({"authorization": "Bearer x"}) == ""
