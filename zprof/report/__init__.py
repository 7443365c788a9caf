"""Reporters: a run in, a document out (`document_of`), rendered for a terminal, as Markdown
or HTML (`zprof.report.render`); plus the files a run's profile is written to."""

from __future__ import annotations

from zprof.model.allocs import AllocsRun
from zprof.model.baseline import Baseline, RegressRun
from zprof.model.bench import BenchRun
from zprof.model.compare import CompareRun
from zprof.model.flame import FlameDiffRun, FlameRun
from zprof.model.memory import MassifRun, MemoryRun
from zprof.model.syscalls import SyscallsRun
from zprof.model.validate import ValidateRun
from zprof.report.allocs import allocs_document
from zprof.report.baseline import baseline_document
from zprof.report.bench import bench_document
from zprof.report.compare import compare_document
from zprof.report.document import Document
from zprof.report.flame import flame_diff_document, flame_document
from zprof.report.memory import massif_document, memory_document
from zprof.report.regress import regress_document
from zprof.report.syscalls import syscalls_document
from zprof.report.validate import validate_document


def document_of(run: object) -> Document:
    """The report of any kind of run."""
    builders = {AllocsRun: allocs_document, MemoryRun: memory_document, MassifRun: massif_document,
                BenchRun: bench_document, FlameRun: flame_document, FlameDiffRun: flame_diff_document,
                ValidateRun: validate_document, Baseline: baseline_document, RegressRun: regress_document,
                SyscallsRun: syscalls_document, CompareRun: compare_document}
    return builders[type(run)](run)  # type: ignore[operator]
