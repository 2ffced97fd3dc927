"""The edge ack ledger and ledger-gated retention: unit cases, and a Hypothesis state machine
checking ledger + retention against a model across crashes (never delete an unacked segment)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sync.ledger import LEDGER_NAME, AckLedger, prune_acked
from sync.segment_source import DirectorySegmentSource, write_sealed_segment


def test_new_ledger_has_epoch_and_survives_reopen(tmp_path: Path) -> None:
    ledger = AckLedger.open(tmp_path)
    assert ledger.created_new_epoch and ledger.acked_through == -1
    assert len(ledger.epoch) == 16 and int(ledger.epoch, 16) >= 0
    assert ledger.record(5, (3,)) is True
    assert ledger.record(4) is False  # the watermark never goes back
    again = AckLedger.open(tmp_path)
    assert (again.epoch, again.acked_through, again.rejected) == (ledger.epoch, 5, frozenset({3}))
    assert not again.created_new_epoch
    assert again.is_acked(5) and not again.is_acked(3) and not again.is_acked(6)
    assert again.is_resolved(3)


def test_corrupt_ledger_is_quarantined_and_a_new_epoch_starts(tmp_path: Path) -> None:
    ledger = AckLedger.open(tmp_path)
    ledger.record(9)
    blob = bytearray((tmp_path / LEDGER_NAME).read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / LEDGER_NAME).write_bytes(bytes(blob))
    fresh = AckLedger.open(tmp_path)
    assert fresh.created_new_epoch and fresh.epoch != ledger.epoch
    assert fresh.acked_through == -1  # nothing is assumed acked: nothing gets deleted
    assert fresh.quarantined is not None and fresh.quarantined.read_bytes() == bytes(blob)


def test_torn_tmp_from_a_crash_mid_persist_is_ignored(tmp_path: Path) -> None:
    ledger = AckLedger.open(tmp_path)
    ledger.record(2)
    (tmp_path / (LEDGER_NAME + ".tmp")).write_bytes(b"EDGL\x01\x00garbage")
    again = AckLedger.open(tmp_path)
    assert (again.epoch, again.acked_through) == (ledger.epoch, 2)
    assert not (tmp_path / (LEDGER_NAME + ".tmp")).exists()


def test_prune_deletes_only_acked_never_rejected(tmp_path: Path) -> None:
    source = DirectorySegmentSource(tmp_path / "segs")
    for seq in range(6):
        write_sealed_segment(tmp_path / "segs", seq, bytes([seq]) * 10)
    ledger = AckLedger.open(tmp_path / "ledger")
    ledger.record(3, (1,))
    assert prune_acked(source, ledger) == [0, 2, 3]
    assert [s.seq for s in source.all_sealed()] == [1, 4, 5]


class LedgerRetentionMachine(RuleBasedStateMachine):
    """Model: sealed seqs, the persisted ack watermark and rejected set, deleted seqs."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="sync-ledger-sm-"))
        self.source = DirectorySegmentSource(self.root / "segs")
        self.ledger = AckLedger.open(self.root / "ledger")
        self.epoch = self.ledger.epoch
        self.next_seq = 0
        self.sealed: set[int] = set()
        self.model_acked_through = -1
        self.model_rejected: set[int] = set()
        self.deleted: set[int] = set()

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _unresolved(self) -> list[int]:
        return sorted(s for s in self.sealed if s > self.model_acked_through)

    @rule(gap=st.integers(0, 2))
    def seal(self, gap: int) -> None:
        seq = self.next_seq + gap  # seqs strictly increase, may skip
        write_sealed_segment(self.root / "segs", seq, seq.to_bytes(4, "little"))
        self.sealed.add(seq)
        self.next_seq = seq + 1

    @precondition(lambda self: bool(self._unresolved()))
    @rule(count=st.integers(1, 3))
    def cloud_acks_in_order(self, count: int) -> None:
        seq = self._unresolved()[: count][-1]
        self.ledger.record(seq)
        self.model_acked_through = seq

    @precondition(lambda self: bool(self._unresolved()))
    @rule()
    def cloud_rejects_next(self) -> None:
        seq = self._unresolved()[0]
        self.ledger.record(seq, (seq,))
        self.model_acked_through = seq
        self.model_rejected.add(seq)

    @rule()
    def retention(self) -> None:
        deleted = prune_acked(self.source, self.ledger)
        self.deleted.update(deleted)
        # after a pass, every acked sealed segment is gone and nothing else is
        remaining = {s.seq for s in self.source.all_sealed()}
        for seq in self.sealed - self.deleted:
            acked = seq <= self.model_acked_through and seq not in self.model_rejected
            assert (seq in remaining) != acked, f"seq {seq} acked={acked}"

    @rule(torn=st.booleans())
    def crash_and_restart(self, torn: bool) -> None:
        """kill -9 at any point between steps, optionally mid-persist (a torn .tmp left)."""
        if torn:
            (self.root / "ledger" / (LEDGER_NAME + ".tmp")).write_bytes(b"EDGL\x01\x00\xff")
        self.ledger = AckLedger.open(self.root / "ledger")
        self.source = DirectorySegmentSource(self.root / "segs")

    @precondition(lambda self: bool(self._unresolved()))
    @rule()
    def crash_between_ledger_persist_and_delete(self) -> None:
        seq = self._unresolved()[0]
        self.ledger.record(seq)  # persisted ...
        self.model_acked_through = seq
        self.ledger = AckLedger.open(self.root / "ledger")  # ... crash before any delete
        assert self.ledger.is_acked(seq)
        assert any(s.seq == seq for s in self.source.all_sealed())  # still there: retention redoes it

    @invariant()
    def never_deleted_unacked(self) -> None:
        for seq in self.deleted:
            assert seq <= self.model_acked_through and seq not in self.model_rejected

    @invariant()
    def ledger_matches_model(self) -> None:
        assert self.ledger.epoch == self.epoch  # crashes never lose the epoch
        assert self.ledger.acked_through == self.model_acked_through
        assert self.ledger.rejected == frozenset(self.model_rejected)

    @invariant()
    def disk_matches_model(self) -> None:
        assert {s.seq for s in self.source.all_sealed()} == self.sealed - self.deleted


TestLedgerRetention = LedgerRetentionMachine.TestCase
TestLedgerRetention.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
