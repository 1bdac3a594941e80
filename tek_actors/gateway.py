"""The gateway: assembles journal, supervisor, actors and frontend; runs, restarts, stops them.

    Gateway(home).run()                       foreground process: until SIGTERM/SIGINT or
                                              gateway.shutdown; returns the exit code
    with Gateway.embedded(home=...) as gw:    in a host process, over inproc://, same code path
        client = gw.client()

Start order: lock the home, open the journal, bind the frontend (domain requests get
`unavailable`, details.state "starting"), start the children and wait until each one runs and has
rehydrated, accept work, journal `gateway.started`, and only then write the connection file and
tell systemd READY=1: whoever finds either can use every domain at once. A restart
(`gateway.restart`) keeps the journal and the frontend (clients stay connected), refuses new
work with `unavailable`, lets in-flight work finish within the grace, stops every child cleanly
(each snapshots), and starts the tree again under a new boot id. A shutdown does the same and
then tears everything down. A fatal failure (the journal's disk, the frontend's loop, or the
tree's restart intensity) tears down at once with exit code 1, so the process supervisor restarts
the process.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import pykka
from loguru import logger

from tek_actors._version import __version__
from tek_actors.config import Config, ConfigStore
from tek_actors.errors import Unavailable
from tek_actors.home import HomeLock, TekHome
from tek_actors.mcp import Catalog
from tek_actors.runtime import (
    ActorContext,
    Backoff,
    ChildSpec,
    Clock,
    Directory,
    Intensity,
    RealClock,
    Supervisor,
    SupervisorHandle,
    SyncStateQuery,
)
from tek_actors.runtime.process import foreground_setup, foreground_teardown
from tek_actors.sessions.manager import CrashSession
from tek_actors.store import EventRecord, Journal, NewEvent, remove_quietly
from tek_actors.transport import Announcer, Frontend, FrontendSettings, ServerAuth, server_auth
from tek_actors.tree import child_specs

if TYPE_CHECKING:
    from tek_actors.client import Client

__all__ = ["Gateway"]

State = Literal["starting", "running", "degraded", "stopping", "stopped"]

_START_TIMEOUT_S = 60.0  # for the tree to start (rehydration included), at a start or restart


class Gateway:
    """One gateway on one home. Not re-startable: make a new one after `stop()`."""

    def __init__(
        self,
        home: str | os.PathLike[str] | TekHome | None = None,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        clock: Clock | None = None,
        test_hooks: bool | None = None,
        extra_children: list[ChildSpec] | None = None,
        embedded: bool = False,
        config_watch_s: float = 1.0,
        token_estimator: Callable[[str], int] | None = None,
    ) -> None:
        """`embedded`: runs inside a host process: inproc:// unless `endpoint` says otherwise,
        and no connection file (the socket, if any, is the host's business). The `gateway`
        section of the configuration in force (config.json, or its last good backup) is read
        here, once, and applies at a start; `endpoint` and `token` override it.

        `token_estimator`: text -> tokens, for planning what fits a model's window (default:
        bytes / 4; either way calibrated per model from the usage providers report)."""
        self.home = home if isinstance(home, TekHome) else TekHome.resolve(home)
        loaded = ConfigStore(self.home.config_path).load(expected=False)
        if loaded.problem is not None:
            logger.warning(
                "config.json is not used ({}); starting on {}",
                loaded.problem.message,
                loaded.source,
            )
        updates = {k: v for k, v in {"endpoint": endpoint, "token": token}.items() if v}
        self.settings = settings = loaded.config.gateway.model_copy(update=updates)
        env_hooks = os.environ.get("TEK_TEST_HOOKS") == "1"
        self.test_hooks = settings.test_hooks or env_hooks if test_hooks is None else test_hooks
        self.clock = clock or RealClock()
        self._own_clock = clock is None
        self._extra_children = extra_children or []
        self.boot_id = uuid.uuid4().hex
        self.started_at = 0.0
        self.exit_code: int | None = None
        self._state: State = "starting"
        self._degraded = False
        self._lock = HomeLock(self.home)
        self._journal: Journal | None = None
        self._frontend: Frontend | None = None
        self._supervisor: SupervisorHandle | None = None
        self._directory = Directory()
        self._specs: list[ChildSpec] = []
        self._lifecycle_lock = threading.Lock()
        self._lifecycle_thread: threading.Thread | None = None
        self._done = threading.Event()
        self._embedded = embedded
        self._announcer = Announcer(
            None if embedded else self.home.connection_file,
            notify_socket=os.environ.get("NOTIFY_SOCKET"),
        )
        self._pending_exit: int | None = None
        self._fatal_reason: str | None = None
        self.endpoint = ""
        self.config_watch_s = config_watch_s  # how often config.json is checked for hand edits
        self.token_estimator = token_estimator
        self.mcp_catalog = Catalog()  # the MCP actor writes it, the sessions read it
        self._auth = ServerAuth()

    # -- assembling --------------------------------------------------------------------------

    def _apply_frontend_limits(self, config: Config) -> None:
        """The frontend's live limits (called by the ConfigActor before it acknowledges)."""
        if self._frontend is not None:
            self._frontend.apply_limits(
                default_timeout_ms=config.gateway.request_timeout_ms,
                client_queue_bound=config.gateway.client_queue_bound,
            )

    def _make_context(self, name: str, incarnation: int, options: dict[str, Any]) -> ActorContext:
        assert self._journal is not None and self._supervisor is not None
        frontend = self._frontend
        return ActorContext(
            name=name,
            incarnation=incarnation,
            journal=self._journal,
            clock=self.clock,
            publish=frontend.publish if frontend else (lambda name, data: None),
            report_exit=self._supervisor.child_exited,
            options=options,
            lookup=self._directory.lookup,
        )

    def start(self) -> Gateway:
        """Start everything; returns once the gateway serves. Raises TekError if it cannot."""
        endpoint = self.settings.endpoint
        if endpoint is None:
            endpoint = (
                f"inproc://tek-{self.boot_id}" if self._embedded else (self.home.default_endpoint())
            )
        self._auth = server_auth(
            endpoint,
            root=self.home.config_dir,
            token=self.settings.token,
            mechanism=self.settings.auth,
            allow_remote=self.settings.allow_remote,
        )
        self.home.ensure()
        self._lock.acquire()
        try:
            self._start(endpoint)
        except BaseException:
            self._teardown(exit_code=1)
            raise
        return self

    def _start(self, endpoint: str) -> None:
        self.started_at = time.time()
        self._journal = Journal(
            self.home.journal_path,
            boot_id=self.boot_id,
            on_committed=self._post_events,
            on_failure=self._journal_failed,
        ).open()
        self._specs = child_specs(self)
        sup = self.settings.supervision
        ref = Supervisor.start(
            self._specs,
            clock=self.clock,
            directory=self._directory,
            make_context=self._make_context,
            intensity=Intensity(sup.tree_max_restarts, sup.tree_window_s),
            backoff=Backoff(
                max(sup.backoff_initial_s, 0.1) * 2, sup.backoff_max_s, 2.0, sup.backoff_jitter
            ),
            on_child_down=self._actor_down,
            on_restarted=self._actor_restarted,
            on_degraded=self._set_degraded,
            on_escalate=lambda reason: self._fatal(reason),
            on_starting=self._fence,
        )
        self._supervisor = SupervisorHandle(ref)
        self._frontend = Frontend(
            settings=FrontendSettings(
                endpoint=endpoint,
                auth=self._auth,
                max_frame_bytes=self.settings.max_frame_bytes,
                default_timeout_ms=self.settings.request_timeout_ms,
                client_queue_bound=self.settings.client_queue_bound,
                replay_chunk=self.settings.replay_chunk,
                sndhwm=self.settings.socket_hwm,
                heartbeat_s=self.settings.heartbeat_s,
            ),
            journal=self._journal,
            directory=self._directory,
            control=self,
            boot_id=self.boot_id,
            gateway_version=__version__,
            clock=self.clock,
            on_fatal=lambda exc: self._fatal(f"the frontend crashed: {exc!r}"),
        )
        self._frontend.set_accepting(False, retry_after_ms=500, state="starting")
        self._frontend.start()
        self.endpoint = self._frontend.bound_endpoint
        self._serve_once_started()
        logger.info("gateway {} serving {} (boot {})", __version__, self.endpoint, self.boot_id)

    def _serve_once_started(self) -> None:
        """Start the tree; once every child runs and has rehydrated, accept work, journal
        `gateway.started`, then announce (connection file, READY=1). Raises Unavailable if the
        tree does not start within _START_TIMEOUT_S or a fatal failure came meanwhile."""
        assert self._supervisor is not None and self._frontend is not None
        assert self._journal is not None
        started = self._supervisor.start_tree(
            self._directory,
            timeout=_START_TIMEOUT_S,
            abandon=lambda: self._fatal_reason is not None,
        )
        if not started:
            raise Unavailable(
                self._fatal_reason or f"the actors did not start within {_START_TIMEOUT_S:.0f}s"
            )
        info = {"boot_id": self.boot_id, "pid": os.getpid(), "version": __version__}
        event = self._journal.append("gateway", [NewEvent("gateway.started", info)])
        # Queued before any new work is let in: every event of this boot's work comes after it,
        # and whoever sees it finds the domains served.
        self._frontend.set_accepting(True)
        event.result(30)
        with self._lifecycle_lock:
            if self._fatal_reason is not None:
                raise Unavailable(self._fatal_reason)
            self._state = "running"
        self._announcer.ready(
            self.endpoint, self.boot_id, started_at=self.started_at, auth=self._auth.describe()
        )

    def _fence(self, name: str, incarnation: int) -> None:
        """Before an incarnation starts: no write of an older one can land after its replay."""
        if self._journal is not None:
            self._journal.fence(name, incarnation)

    def _post_events(self, records: list[EventRecord]) -> None:
        if self._frontend is not None:
            self._frontend.post_events(records)

    def _actor_down(self, name: str) -> None:
        if self._frontend is not None:
            self._frontend.actor_down(name)

    # -- what the frontend asks of us (GatewayControl) ---------------------------------------

    def status(self) -> dict[str, Any]:
        actors = self._directory.status()
        frontend = self._frontend
        actors["frontend"] = {
            "state": "running" if frontend and frontend.alive else "stopped",
            "restarts": 0,
            "last_error": None,
        }
        journal = self._journal
        failed = journal.failed if journal else None
        refused = journal.refused if journal else None  # the disk is full or read-only
        disk = refused.details["reason"] if refused is not None and failed is refused else None
        actors["journal"] = {
            "state": disk or ("failed" if failed else "running"),
            "restarts": 0,
            "last_error": str(failed) if failed else None,
        }
        return {
            "state": self.state,
            "boot_id": self.boot_id,
            "head_seq": journal.head_seq if journal else 0,
            "actors": actors,
            "clients": frontend.clients if frontend else 0,
            "pid": os.getpid(),
            "version": __version__,
            "endpoint": self.endpoint,
            "started_at": self.started_at,
        }

    @property
    def state(self) -> State:
        refusing = self._journal is not None and self._journal.refused is not None
        if self._state == "running" and (self._degraded or refusing):
            return "degraded"
        return self._state

    def request_restart(self, grace_ms: int, *, shutdown: bool, reason: str) -> None:
        if self._state == "starting":
            starting = {"state": "starting"}
            raise Unavailable("the gateway is still starting", retry_after_ms=500, details=starting)
        self._begin_lifecycle(grace_ms, shutdown=shutdown, reason=reason, exit_code=0)

    def inject_fault(self, actor: str, fail_starts: int) -> bool | None:
        if not self.test_hooks or self._supervisor is None:
            return None
        if actor.startswith("session-"):  # not the supervisor's: the SessionManager's child
            return bool(self._ask("sessions", CrashSession(actor.removeprefix("session-")), 5.0))
        return self._supervisor.inject_fault(actor, fail_starts=fail_starts)

    def _ask(self, name: str, message: Any, timeout: float) -> Any:
        """Ask child `name` directly (off every actor's thread); None if it cannot answer."""
        ref = self._directory.lookup(name)
        try:
            return ref.ask(message, timeout=timeout) if ref is not None else None
        except (pykka.ActorDeadError, pykka.Timeout):
            return None

    def sync_states(self, wants_domain: Callable[[str], bool]) -> list[tuple[str, str, int, Any]]:
        states: list[tuple[str, str, int, Any]] = []
        if wants_domain("gateway"):
            journal = self._journal
            states.append(("gateway", "gateway", journal.head_seq if journal else 0, self.status()))
        for spec in self._specs:
            domain = spec.actor_class.domain
            if not domain or not wants_domain(domain):
                continue
            answer = self._ask(spec.name, SyncStateQuery(), 2.0)
            if answer is None:
                logger.warning("{} gave no state for a sync.snapshot", spec.name)
            elif isinstance(answer, tuple):
                seq, state = answer
                states.append((domain, spec.name, int(seq), state))
        return states

    # -- supervision callbacks ---------------------------------------------------------------

    def _actor_restarted(self, name: str, restarts: int, error: str) -> None:
        if self._journal is not None:
            self._journal.append(
                "gateway",
                [
                    NewEvent(
                        "gateway.actor_restarted",
                        {
                            "actor": name,
                            "restarts": restarts,
                            "error": error,
                        },
                    )
                ],
            )

    def _set_degraded(self, degraded: bool) -> None:
        self._degraded = degraded
        if degraded:
            logger.error("the gateway is degraded: a child exceeded its restart intensity")

    def _journal_failed(self, exc: BaseException) -> None:
        self._fatal(f"the journal failed: {exc}")

    def _fatal(self, reason: str) -> None:
        logger.error("fatal: {}; the gateway exits with code 1", reason)
        with self._lifecycle_lock:
            self._fatal_reason = self._fatal_reason or reason
            starting = self._state == "starting"
        self._directory.wake()  # a start waiting for the tree gives up
        if not starting:  # else start() raises and tears down
            self._begin_lifecycle(0, shutdown=True, reason=reason, exit_code=1)

    # -- restart and shutdown ----------------------------------------------------------------

    def _begin_lifecycle(
        self, grace_ms: int, *, shutdown: bool, reason: str, exit_code: int
    ) -> None:
        with self._lifecycle_lock:
            busy = self._lifecycle_thread is not None and self._lifecycle_thread.is_alive()
            if self._done.is_set():
                return
            if busy:
                # A stop asked for during a restart is not lost: it runs when the restart ends
                # (a second restart request while one runs is the same restart).
                if shutdown or exit_code:
                    self._pending_exit = max(exit_code, self._pending_exit or 0)
                return
            self._lifecycle_thread = threading.Thread(
                target=self._lifecycle,
                args=(grace_ms, shutdown, reason, exit_code),
                name="tek-lifecycle",
                daemon=True,
            )
            self._lifecycle_thread.start()

    def _lifecycle(self, grace_ms: int, shutdown: bool, reason: str, exit_code: int) -> None:
        frontend, supervisor = self._frontend, self._supervisor
        try:
            self._state = "stopping"
            if shutdown or exit_code:
                self._announcer.stopping()
            else:
                self._announcer.restarting()
            if frontend is not None and not exit_code:
                frontend.publish(
                    "gateway.shutdown_imminent",
                    {"grace_ms": grace_ms, "reason": reason, "restart": not shutdown},
                )
                frontend.set_accepting(
                    False,
                    retry_after_ms=min(grace_ms, 5_000) + 500,
                    state="stopping" if shutdown else "restarting",
                )
                frontend.wait_idle(timeout=grace_ms / 1000)
                frontend.cancel_unstarted()
                frontend.wait_idle(timeout=self.settings.supervision.shutdown_timeout_s)
            elif frontend is not None:
                frontend.set_accepting(False, retry_after_ms=5_000, state="stopping")
                frontend.cancel_unstarted()
            if supervisor is not None:
                supervisor.stop_all(timeout=60.0)
            if shutdown or exit_code or self._pending_exit is not None:
                self._teardown(exit_code=max(exit_code, self._pending_exit or 0))
                return
            self._reboot()
            with self._lifecycle_lock:
                pending, self._pending_exit = self._pending_exit, None
            if pending is not None:
                self._lifecycle(0, True, "a stop was asked for during the restart", pending)
        except BaseException:
            logger.opt(exception=True).error("restart failed; the gateway exits with code 1")
            self._teardown(exit_code=1)

    def _reboot(self) -> None:
        assert self._frontend is not None and self._supervisor is not None
        assert self._journal is not None
        self.boot_id = uuid.uuid4().hex
        self._journal.boot_id = self.boot_id
        self._frontend.set_boot(self.boot_id)
        self._degraded = False
        self._serve_once_started()
        logger.info("gateway restarted in-process (boot {})", self.boot_id)

    def _teardown(self, *, exit_code: int) -> None:
        """Stop whatever was started, in reverse order. Safe to call on a half-built gateway."""
        self._state = "stopping"
        if self._supervisor is not None:
            try:
                self._supervisor.stop_all(timeout=60.0)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
            self._supervisor.stop(timeout=10.0)
        if self._frontend is not None:
            self._frontend.stop()
        if self._journal is not None:
            self._journal.close()
        if self._own_clock:
            self.clock.close()
        self._announcer.withdraw()
        if not self._embedded and self.endpoint == f"ipc://{self.home.socket_path}":
            remove_quietly(self.home.socket_path)
        self._lock.release()
        self._state = "stopped"
        self.exit_code = exit_code
        self._done.set()

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the gateway has stopped; its exit code, or None on timeout."""
        self._done.wait(timeout)
        return self.exit_code

    def stop(self, *, grace_ms: int | None = None, timeout: float = 60.0) -> int | None:
        """Graceful shutdown from the host; returns the exit code."""
        if self._done.is_set():
            return self.exit_code
        grace = self.settings.restart_grace_ms if grace_ms is None else grace_ms
        self._begin_lifecycle(grace, shutdown=True, reason="stopped by its host", exit_code=0)
        code = self.wait(timeout)
        thread = self._lifecycle_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return code

    def restart(self, *, grace_ms: int = 0, timeout: float = 60.0) -> None:
        """In-process restart from the host; returns once the new tree serves."""
        self._begin_lifecycle(grace_ms, shutdown=False, reason="restarted by its host", exit_code=0)
        thread = self._lifecycle_thread
        if thread is not None:
            thread.join(timeout)

    # -- ways in -----------------------------------------------------------------------------

    def run(self) -> int:
        """Serve in the foreground until SIGTERM/SIGINT or `gateway.shutdown` (main thread only)."""
        signalled: list[signal.Signals] = []

        def graceful(signum: int, frame: object) -> None:
            name = signal.Signals(signum)
            if self._state == "starting":
                signalled.append(name)  # acted on once the start is complete
                return
            logger.info("signal {}: shutting down gracefully", name.name)
            self._begin_lifecycle(
                self.settings.restart_grace_ms,
                shutdown=True,
                reason=f"signal {name.name}",
                exit_code=0,
            )

        # Installed before the start: a signal that arrives while actors start is not lost.
        previous = {sig: signal.signal(sig, graceful) for sig in (signal.SIGTERM, signal.SIGINT)}
        foreground_setup()  # faulthandler on SIGUSR1; large freed blocks go back to the OS
        try:
            self.start()
            gc.freeze()  # what the start built lives as long as the process: never scan it again
            if signalled:
                graceful(signalled[0], None)
            self._done.wait()  # signal handlers run on this (main) thread meanwhile
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            foreground_teardown()
        thread = self._lifecycle_thread
        if thread is not None:
            thread.join(30.0)
        return self.exit_code or 0

    @classmethod
    @contextmanager
    def embedded(
        cls, home: str | os.PathLike[str] | TekHome | None = None, **kwargs: Any
    ) -> Iterator[Gateway]:
        """A gateway inside the host process, on inproc:// (no socket file, no connection file)."""
        gateway = cls(home, embedded=True, **kwargs)
        gateway.start()
        try:
            yield gateway
        finally:
            gateway.stop(grace_ms=0)

    def client(self, **kwargs: Any) -> Client:
        """A Client connected to this gateway (over inproc when embedded)."""
        from tek_actors.client import Client  # the client layer sits above the gateway

        if self._frontend is None:
            raise Unavailable("the gateway is not started")
        kwargs.setdefault("auth", self._auth.client_side(self.home.config_dir))
        return Client(self.endpoint, context=self._frontend.context, **kwargs)
