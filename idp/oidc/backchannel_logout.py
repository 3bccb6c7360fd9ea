"""OpenID Connect Back-Channel Logout 1.0: when a person signs out here, the apps they
signed in to during that browser session are told, server to server.

- An app registers ``backchannel_logout_uri`` (an http(s) URL without fragment) and may set
  ``backchannel_logout_session_required`` (the token always carries ``sid`` anyway).
- The logout token (section 2.4) is a JWT with ``typ: logout+jwt``, signed like the app's
  ID tokens (``id_token_signed_response_alg``): ``iss``, ``aud`` (the ``client_id``),
  ``iat``, ``exp`` (two minutes), ``jti``, ``sub`` (the id the app knows the person by:
  pairwise where registered), ``sid`` (the ID tokens' ``sid``) and ``events`` with the
  back-channel logout event. It never carries a ``nonce``.
- When: a sign-out (start page or RP-initiated), and any other end of a session while its
  browser is here: another person's sign-in in the same browser, an account found
  suspended or disabled (the same person signing in again keeps the session); and each
  session of an account signed out everywhere or deactivated through SCIM, in every
  browser (``idp.sessions.end_everywhere``). A session that simply times out in the store is not
  told about (nothing runs then).
- Delivery: the tokens are made while the answer is made; the POSTs
  (``application/x-www-form-urlencoded``, ``logout_token=...``) go out on an event loop
  of their own (one thread per process), each on its own, ``AT_ONCE`` at a time, each
  try within 5 seconds all told, redirects not followed. An app that cannot be reached,
  does not answer in time, or answers 5xx, 408 or 429 (a school's server restarting) is
  asked again after 1, 5 and 25 seconds (``RETRY_AFTER``; section 2.8 leaves retrying to
  the OP), within the token's two minutes: a token that expired waiting is not sent.
  Another 4xx is the app's verdict on the token (section 2.8: 400 when its logout
  failed) and is not retried. Each refusal is logged (the ``client_id`` and the status
  or error only). A person's sign-out never waits on a school's server. Deliveries under
  way are waited for at shutdown (``drain``, 6 seconds at most).
- Durable (``start``, at each server's startup): each delivery is also written to the
  store it began with (its token, app and tries made, until the token expires; written
  off the request, on the delivery loop) and queued (``OUTBOX``) under a lease that its
  process's heartbeat renews every ``HEARTBEAT_SECONDS``, also while it waits for a slot
  or pauses between tries. A process that ends (a deploy, a crash) leaves its deliveries
  there; ``HEARTBEAT_SECONDS`` + ``GRACE`` (15) seconds after the last renewal, another
  worker's poller takes the delivery over and goes on with its remaining tries. With
  Redis that is any worker of any host; the in-process store ends with its process, and
  what it held with it. An app may so hear a token
  twice in rare cases (a process that stalled past its lease, or ended mid-try):
  section 2.6 lets it refuse a ``jti`` seen before. A record another version wrote is
  read for the fields this one knows; one that cannot be read is dropped.

Only OIDC apps with a ``backchannel_logout_uri`` are told; front-channel logout and
CAS/SAML single logout belong to federation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import httpx

from core.store import Store
from directory import subjects

if TYPE_CHECKING:
    from idp.sessions import SSOSession

log = logging.getLogger("idp.oidc.backchannel_logout")
EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_SECONDS = 120
SECONDS_PER_APP = 5.0
RETRY_AFTER = (1.0, 5.0, 25.0)  # seconds before each further try of an app not reached
_RETRIED_STATUSES = frozenset({408, 429})  # and every 5xx
AT_ONCE = 32  # deliveries in flight per process; the rest wait their turn
OUTBOX = "bcl:outbox"  # the queue of deliveries (their keys), due when their lease runs out
HEARTBEAT_SECONDS = 5.0  # how often a process renews the leases of its deliveries
GRACE = 10.0  # past a lease's renewal time, how long before another process takes over
POLL_SECONDS = 1.0  # how often each server looks for deliveries whose process ended
# Deliveries run on one event loop of their own, each on its own: an app that answers a
# byte every few seconds holds neither a request thread nor anyone else's delivery.
_loop: asyncio.AbstractEventLoop | None = None
_slots: asyncio.Semaphore | None = None
_pending: set[Future[None]] = set()
_lock = threading.Lock()
_outbox: Store | None = None  # where deliveries are kept (``start``); None: in memory only
_polling = False
_under_way: dict[str, Store | None] = {}  # keys of the kept deliveries under way here


@dataclass(frozen=True)
class Notice:
    client_id: str
    url: str
    logout_token: str
    expires_at: float = 0.0  # the token's exp: not worth sending after it
    tries: int = 0  # tries made before (by this process or one that ended)
    key: str = ""  # its entry in the outbox ("": not kept)


def notices(state: Any, ended: SSOSession) -> list[Notice]:
    """A logout token for each app of the ended session that registered a
    ``backchannel_logout_uri``. ``state``: the app's (``settings``, ``db``, ``keys``,
    ``clients``)."""
    made = []
    for client in ended.registered_apps(state.clients):
        if not client.backchannel_logout_uri:
            continue
        sub = ended.sub
        if client.sector is not None:
            with state.db.session() as session:
                sub = subjects.known(session, client.sector, ended.account_id, ended.sub)
        now = int(time.time())
        claims = {"iss": state.settings.issuer, "aud": client.client_id, "iat": now,
                  "exp": now + TOKEN_SECONDS, "jti": secrets.token_urlsafe(16),
                  "sid": subjects.presented_sid(state.settings, client.sector, ended.sid),
                  "events": {EVENT: {}}}
        if sub:
            claims["sub"] = sub
        token = state.keys.sign(claims, client.id_token_signed_response_alg, typ="logout+jwt")
        made.append(Notice(client.client_id, client.backchannel_logout_uri, token,
                           now + TOKEN_SECONDS))
    return made


def tell(state: Any, ended: SSOSession) -> None:
    """Tell the apps of a session that has ended, in the background: the person's answer
    never waits for them. A failure to make the tokens is logged, never the person's
    problem (the session has ended either way)."""
    try:
        made = notices(state, ended)
    except Exception:  # a database or signing failure: the sign-out itself stands
        log.exception("back-channel logout tokens could not be made")
        return
    _submit(made)


def start(store: Store, *, take_over: bool = True) -> None:
    """At a server's startup: keep deliveries in ``store``, and take over those whose
    process ended (a poller on the delivery loop; not for a command-line run, which
    only leaves what it could not finish to the servers)."""
    global _outbox, _polling
    _outbox = store
    loop = _delivery_loop()
    with _lock:
        if _polling or not take_over:
            return
        _polling = True
    asyncio.run_coroutine_threadsafe(_take_over(), loop)


def stop() -> None:
    """At shutdown, after ``drain``: no new delivery is kept. Those under way keep the
    store they began with, and what they leave stays there for another process."""
    global _outbox
    _outbox = None


def _submit(made: list[Notice]) -> list[Future[None]]:
    loop = _delivery_loop()
    store = _outbox  # each delivery keeps to the store it began with
    return [_track(asyncio.run_coroutine_threadsafe(_deliver_one(notice, store), loop))
            for notice in made]


def _track(future: Future[None]) -> Future[None]:
    with _lock:
        _pending.add(future)
    future.add_done_callback(_forget)
    return future


def _delivery_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="backchannel-logout",
                             daemon=True).start()
            asyncio.run_coroutine_threadsafe(_heartbeat(), _loop)
        return _loop


def _forget(future: Future[None]) -> None:
    with _lock:
        _pending.discard(future)


def drain(timeout: float = SECONDS_PER_APP + 1) -> int:
    """Wait for the deliveries under way (at shutdown, in the CLI, in tests); how many
    were left unfinished."""
    with _lock:
        under_way = list(_pending)
    _done, left = wait(under_way, timeout=timeout)
    if left:
        log.warning("%d back-channel logout deliveries (or their retries) left unfinished%s",
                    len(left), "; kept in the store for another process" if _outbox else "")
    return len(left)


def deliver(made: list[Notice]) -> None:
    """Send ``made`` and wait until each is answered or out of time."""
    wait(_submit(made), timeout=SECONDS_PER_APP * (1 + len(made) // AT_ONCE) + 1)


async def _deliver_one(notice: Notice, store: Store | None) -> None:
    """Try, and try again after each of ``RETRY_AFTER`` (those left after the tries
    already made) while the failure is worth retrying and the token is still alive; the
    slot is held only while posting. Kept in ``store`` (when there is one) from the start
    to the end, its tries written before each pause, its lease renewed by the heartbeat."""
    if store is not None and not notice.key:
        notice = _kept(notice, store)
    if notice.key:
        _under_way[notice.key] = store
    try:
        for pause in (*RETRY_AFTER, None)[notice.tries:] or (None,):
            failed, again = await _try(notice)
            if not failed:
                return
            if not again or pause is None or _expired(notice, after=pause):
                log.warning("back-channel logout of %s not accepted: %s; given up",
                            notice.client_id, failed)
                return
            log.warning("back-channel logout of %s not accepted: %s; trying again in %g s",
                        notice.client_id, failed, pause)
            notice = replace(notice, tries=notice.tries + 1)
            _in_store(notice.client_id, _write, store, notice)  # a taker goes on here
            await asyncio.sleep(pause)
    finally:
        if notice.key:  # cleared before its lease stops being renewed
            _in_store(notice.client_id, _forget_kept, store, notice.key)
            _under_way.pop(notice.key, None)


def _kept(notice: Notice, store: Store) -> Notice:
    """``notice`` with a key, written and leased in ``store`` (as it was when that fails:
    a store that is down costs durability, never the delivery)."""
    keyed = replace(notice, key=secrets.token_urlsafe(16))
    if _in_store(notice.client_id, _keep, store, keyed):
        return keyed
    return notice


def _in_store(client_id: str, action: Any, store: Store | None, *args: Any) -> bool:
    """Run a store ``action``: one short call, made on the loop itself (a thread pool may
    already be shut down while the interpreter exits, and a try that ends then must still
    clear itself). The store out of reach is logged, never raised: the delivery goes on;
    anything else is logged with its traceback."""
    if store is None:
        return False
    try:
        action(store, *args)
    except store.errors as error:
        log.warning("back-channel logout of %s: the store failed (%s)", client_id,
                    type(error).__name__)
        return False
    except Exception:
        log.exception("back-channel logout of %s: keeping it in the store failed", client_id)
        return False
    return True


def _record(notice: Notice) -> bytes:
    return json.dumps({k: v for k, v in asdict(notice).items() if k != "key"}).encode()


def _write(store: Store, notice: Notice) -> None:
    """The record, living as long as the token (``TOKEN_SECONDS`` when it has no time)."""
    left = notice.expires_at - time.time() if notice.expires_at else TOKEN_SECONDS
    store.set("bcl:" + notice.key, _record(notice), ttl=max(1.0, left + 1))


def _keep(store: Store, notice: Notice) -> None:
    _write(store, notice)
    store.schedule(OUTBOX, notice.key, time.time() + HEARTBEAT_SECONDS + GRACE)


def _forget_kept(store: Store, key: str) -> None:
    store.unschedule(OUTBOX, key)
    store.delete("bcl:" + key)


async def _heartbeat() -> None:
    """Every ``HEARTBEAT_SECONDS``: renew the leases of the deliveries under way here,
    also those waiting for a slot or pausing between tries, one call per store, so that
    no other process takes them over while this one lives (a finished one, taken out
    meanwhile, is not put back)."""
    last = time.monotonic()
    while True:  # waking at least twice a second: a changed HEARTBEAT_SECONDS holds soon
        await asyncio.sleep(min(HEARTBEAT_SECONDS, 0.5))
        if time.monotonic() - last < HEARTBEAT_SECONDS:
            continue
        last = time.monotonic()
        by_store: dict[int, tuple[Store, list[str]]] = {}
        for key, store in list(_under_way.items()):
            if store is not None:
                by_store.setdefault(id(store), (store, []))[1].append(key)
        for store, keys in by_store.values():
            _in_store("(leases)", _renew, store, keys)


def _renew(store: Store, keys: list[str]) -> None:
    store.reschedule(OUTBOX, keys, time.time() + HEARTBEAT_SECONDS + GRACE)


async def _take_over() -> None:
    """Every ``POLL_SECONDS``: take over the deliveries whose lease ran out (their process
    ended), and go on with their remaining tries here."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(POLL_SECONDS)
        store = _outbox
        if store is None:
            continue
        try:
            taken = _claim(store)
        except store.errors as error:  # the store out of reach: look again next time
            log.warning("back-channel logout outbox not read: %s", type(error).__name__)
            continue
        except Exception:  # a bug: said with its traceback, and the poller goes on
            log.exception("back-channel logout outbox not read")
            continue
        for notice in taken:
            log.info("back-channel logout of %s taken over from an ended process",
                     notice.client_id)
            _track(asyncio.run_coroutine_threadsafe(_deliver_one(notice, store), loop))


def _claim(store: Store) -> list[Notice]:
    """The deliveries whose lease ran out, leased to this process now; a record that
    cannot be read (expired, or another version's) is dropped, and holds back no other."""
    taken = []
    for key in store.claim_due(OUTBOX, HEARTBEAT_SECONDS + GRACE, AT_ONCE):
        if key in _under_way:  # this process's own, its heartbeat late: still under way
            continue
        notice = _read(store.get("bcl:" + key), key)
        if notice is None:
            _forget_kept(store, key)
            continue
        taken.append(notice)
    return taken


_FIELDS = frozenset(f.name for f in fields(Notice)) - {"key"}


def _read(record: bytes | None, key: str) -> Notice | None:
    if record is None:
        return None
    try:
        data = json.loads(record)
        return Notice(**{k: v for k, v in data.items() if k in _FIELDS}, key=key)
    except (ValueError, TypeError, AttributeError):
        log.warning("back-channel logout record %s cannot be read; dropped", key[:6])
        return None


def _expired(notice: Notice, after: float = 0.0) -> bool:
    return bool(notice.expires_at) and time.time() + after > notice.expires_at


async def _try(notice: Notice) -> tuple[str, bool]:
    """One POST of the logout token: ``(what failed, whether to try again)``."""
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(AT_ONCE)
    async with _slots:
        if _expired(notice):
            return "its token expired waiting, not sent", False
        try:
            async with httpx.AsyncClient(timeout=SECONDS_PER_APP,
                                         follow_redirects=False) as http:
                answer = await asyncio.wait_for(http.post(
                    notice.url, data={"logout_token": notice.logout_token},
                    headers={"Cache-Control": "no-cache"}), SECONDS_PER_APP)
        except (httpx.InvalidURL, ValueError) as error:  # a host IDNA cannot encode...
            return type(error).__name__, False
        except (httpx.HTTPError, TimeoutError) as error:
            return type(error).__name__, True
    if answer.is_success:
        return "", False
    status = answer.status_code
    return f"status {status}", status >= 500 or status in _RETRIED_STATUSES
