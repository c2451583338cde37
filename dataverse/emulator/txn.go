package emulator

// Transactions. A $batch change set (§4.5), a bulk message (§7.1) and a list action
// with many members are all or nothing, as they are in Dataverse. Every write that
// changes e.rows first records how to undo itself in the open journal (saveLocked);
// a failure replays the journal backwards. Webhook calls raised inside a
// transaction wait in the journal and are sent only when the outermost one commits,
// so a rolled-back change never reaches a receiver.
//
// A bulk message or list action runs under one hold of e.mu, so nothing else sees
// its intermediate state. A change set spans several requests' handlers, each of
// which takes e.mu itself; for it the batch handler holds e.gate exclusively, which
// every other Web API request takes shared, so the rollback can only meet the change
// set's own writes.

// journal is the undo log of the open transaction; guarded by e.mu.
type journal struct {
	undo  []func()
	calls []*stepCall // webhook calls held until the outermost commit
}

// txn is one (possibly nested) transaction: nested ones are savepoints in the
// outermost one's journal.
type txn struct {
	e     *Emulator
	owner bool // the outermost transaction, which owns the journal
	mark  int  // len(undo) at begin
	calls int  // len(calls) at begin
}

// beginLocked opens a transaction, nested in the open one if there is one.
func (e *Emulator) beginLocked() *txn {
	if e.journal == nil {
		e.journal = &journal{}
		return &txn{e: e, owner: true}
	}
	return &txn{e: e, mark: len(e.journal.undo), calls: len(e.journal.calls)}
}

// rollbackLocked undoes every write since begin and drops the webhook calls
// raised since.
func (tx *txn) rollbackLocked() {
	j := tx.e.journal
	for i := len(j.undo) - 1; i >= tx.mark; i-- {
		j.undo[i]()
	}
	j.undo = j.undo[:tx.mark]
	j.calls = j.calls[:tx.calls]
	if tx.owner {
		tx.e.journal = nil
	}
}

// commitLocked keeps the writes; the outermost commit closes the journal and
// returns the held webhook calls, which the caller enqueues after unlocking.
func (tx *txn) commitLocked() []*stepCall {
	if !tx.owner {
		return nil
	}
	calls := tx.e.journal.calls
	tx.e.journal = nil
	return calls
}

// saveLocked records how to restore a row, or its absence, before a write replaces
// its values, inserts it or removes it. Writes never change a row's vals map in
// place, so keeping the old map is enough.
func (e *Emulator) saveLocked(table, id string) {
	j := e.journal
	if j == nil {
		return
	}
	rows := e.rows[table]
	rec := rows[id]
	if rec == nil {
		j.undo = append(j.undo, func() { delete(rows, id) })
		return
	}
	vals, version := rec.vals, rec.version
	j.undo = append(j.undo, func() {
		rec.vals, rec.version = vals, version
		rows[id] = rec
	})
}

// holdLocked keeps webhook calls back while a transaction is open and reports
// whether it did.
func (e *Emulator) holdLocked(calls []*stepCall) bool {
	if e.journal == nil {
		return false
	}
	e.journal.calls = append(e.journal.calls, calls...)
	return true
}
