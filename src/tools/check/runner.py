"""The :class:`Checker`: runs every check of :data:`~.suite.CHECKS` against one server, four
at a time, each within its own limit and after the checks it needs; records the verdicts."""

from __future__ import annotations

from collections.abc import Callable

import trio

from .client import CheckFailed, Transcript, Unusable
from .harness import Harness
from .model import ANYCABLE, FAIL, NOT_RUN, PASS, SKIP, Options, Result
from .suite import CHECKS, Check

#: How many checks run at once
CONCURRENCY = 4


class Checker(Harness):
    """Runs the checks against one server."""

    def __init__(
        self,
        options: Options,
        *,
        report: Callable[[Result], None] | None = None,
    ) -> None:
        super().__init__(options)
        self._report = report
        self.results: dict[str, Result] = {}

    def budget(self, check: Check) -> float:
        return self.options.timeout * check.waits + self.options.ping_interval * check.pings

    def skip_reason(self, check: Check) -> str | None:
        if check.profile == ANYCABLE and self.options.profile != ANYCABLE:
            return "needs --profile anycable"
        return check.needs(self.options)

    def record(self, result: Result) -> None:
        self.results[result.name] = result
        if self._report is not None:
            self._report(result)

    async def _run_one(
        self, check: Check, done: dict[str, trio.Event], limit: trio.CapacityLimiter
    ) -> None:
        try:
            reason = self.skip_reason(check)
            if reason is not None:
                self.record(Result(check.name, SKIP, reason, check.profile))
                return
            requires = check.prerequisites(self.options)
            for name in requires:
                await done[name].wait()
            if check.last:
                for other in CHECKS:
                    if not other.last:
                        await done[other.name].wait()
            failed = [n for n in requires if self.results[n].status != PASS]
            if failed:
                causes = ", ".join(f"{n!r} {self.results[n].status}" for n in failed)
                self.record(
                    Result(check.name, NOT_RUN, f"needs a passing check: {causes}", check.profile)
                )
                return
            async with limit:
                self.record(await self._execute(check))
        finally:
            done[check.name].set()

    async def _execute(self, check: Check) -> Result:
        transcript = Transcript()
        started = trio.current_time()
        unusable = False
        budget = self.budget(check)
        try:
            with trio.fail_after(budget):
                status, detail = PASS, await check.run(self, transcript)
        except Unusable as exc:
            status, detail, unusable = FAIL, str(exc), True
        except CheckFailed as exc:
            status, detail = FAIL, str(exc)
        except trio.TooSlowError:
            status, detail = FAIL, f"timed out (the check's limit is {budget:g}s)"
        except Exception as exc:  # a bug in a check must not end the run
            status, detail = FAIL, f"{type(exc).__name__}: {exc}"[:200]
        return Result(
            check.name,
            status,
            detail,
            check.profile,
            trio.current_time() - started,
            tuple(transcript.sent),
            tuple(transcript.received),
            unusable,
        )

    def run_limit(self) -> float:
        """The whole run's limit: the longest chain of dependent checks, each at its limit."""
        by_name = {check.name: check for check in CHECKS}

        def chain(check: Check) -> float:
            prerequisites = check.prerequisites(self.options)
            return self.budget(check) + max((chain(by_name[n]) for n in prerequisites), default=0)

        others = max(chain(check) for check in CHECKS if not check.last)
        last = sum(self.budget(check) for check in CHECKS if check.last)
        return others + last + self.options.timeout

    async def run(self) -> list[Result]:
        """Run every check; the results in the order of :data:`CHECKS`."""
        done = {check.name: trio.Event() for check in CHECKS}
        limit = trio.CapacityLimiter(CONCURRENCY)
        with trio.move_on_after(self.run_limit()):
            async with trio.open_nursery() as nursery:
                for check in CHECKS:
                    nursery.start_soon(self._run_one, check, done, limit)
        for check in CHECKS:
            if check.name not in self.results:
                self.record(
                    Result(check.name, NOT_RUN, "the run's time limit was reached", check.profile)
                )
        return [self.results[check.name] for check in CHECKS]
