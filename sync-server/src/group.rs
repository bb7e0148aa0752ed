//! Group commit across requests: concurrent writers hand their work to whichever of them
//! is writing, which runs everything queued in **one** serialized transaction and commits
//! once. Every caller returns only after the transaction holding its work has committed
//! (or with an error if that commit failed), so durability is exactly that of one
//! transaction per request — with one commit (on SQLite: one WAL append of the pages the
//! batch dirtied, one page-cache reset for every reader; on PostgreSQL: one WAL flush)
//! shared by all the pushes and audit events that arrived meanwhile.
//!
//! Work is a re-runnable closure (`Fn`): when one piece fails (an error or a panic) the
//! shared transaction is rolled back and every piece of the batch runs again in a
//! transaction of its own, so one failure never rolls back another request's work and
//! the common case needs no savepoints (whose statement journal copied every page a
//! piece touched).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::db::{Db, DbError, Sql};

/// One queued piece of work.
trait Task: Send {
    /// Runs inside a transaction; `false` when it failed.
    fn run(&mut self, t: &mut dyn Sql) -> bool;
    /// Hands the result to the waiting caller once the transaction has ended.
    fn finish(self: Box<Self>, commit: Result<(), DbError>);
}

/// Where a caller waits for its own result: only its own thread is woken when the result
/// is in (with a shared condition variable every commit woke every waiting caller, and
/// they queued on the group's lock one after another to look).
struct Slot<T, E> {
    out: Mutex<Option<Result<T, E>>>,
    ready: Condvar,
}

impl<T, E> Slot<T, E> {
    fn put(&self, r: Result<T, E>) {
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        self.ready.notify_one();
    }

    fn take(&self) -> Option<Result<T, E>> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

struct Work<T, E: From<DbError>, F> {
    f: F,
    out: Option<Result<T, E>>,
    slot: Arc<Slot<T, E>>,
    finished: bool,
}

impl<T, E, F> Task for Work<T, E, F>
where
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
    F: Fn(&mut dyn Sql) -> Result<T, E> + Send + 'static,
{
    fn run(&mut self, t: &mut dyn Sql) -> bool {
        let f = &self.f;
        let r = match catch_unwind(AssertUnwindSafe(|| f(t))) {
            Ok(r) => r,
            Err(p) => Err(E::from(DbError::Group(panic_text(&p)))),
        };
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }

    fn finish(mut self: Box<Self>, commit: Result<(), DbError>) {
        let r = match (commit, self.out.take()) {
            (Ok(()), Some(out)) => out,
            // Its own error (the transaction was rolled back because of it).
            (Err(_), Some(Err(own))) => Err(own),
            (Err(e), _) => Err(E::from(e)),
            (Ok(()), None) => Err(E::from(DbError::Group("not run".into()))),
        };
        self.finished = true;
        self.slot.put(r);
    }
}

impl<T, E: From<DbError>, F> Drop for Work<T, E, F> {
    /// A piece dropped without a result (its writer thread ended mid-batch) still
    /// answers its caller, with an error, instead of leaving it waiting.
    fn drop(&mut self) {
        if !self.finished {
            self.slot.put(Err(E::from(DbError::Group(
                "penulis berhenti (writer stopped)".into(),
            ))));
        }
    }
}

fn panic_text(p: &Box<dyn Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// The queue of one database's grouped writes.
#[derive(Default)]
pub struct Group {
    state: Mutex<State>,
    /// Without a dedicated writer: wakes the callers waiting for the one running a batch.
    done: Condvar,
    /// Wakes the dedicated writer, if there is one ([`spawn_writer`]).
    work: Condvar,
    /// Batches committed (or rolled back) and the pieces they held, for `/metrics`.
    batches: AtomicU64,
    pieces: AtomicU64,
}

#[derive(Default)]
struct State {
    queue: Vec<Box<dyn Task>>,
    writing: bool,
    /// A dedicated writer thread runs every batch; callers only queue and wait.
    dedicated: bool,
}

/// Runs one batch in one transaction; on a failure each piece runs again on its own.
fn run_batch(db: &Db, group: &Group, mut batch: Vec<Box<dyn Task>>) {
    group.batches.fetch_add(1, Ordering::Relaxed);
    group
        .pieces
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let r = db.tx(true, |t| -> Result<(), DbError> {
        for task in batch.iter_mut() {
            if !task.run(t) {
                return Err(DbError::Group("rolled back".into()));
            }
        }
        Ok(())
    });
    match r {
        Ok(()) => {
            for task in batch {
                task.finish(Ok(()));
            }
        }
        Err(_) if batch.len() > 1 => {
            // One piece failed: each runs again on its own.
            for mut task in batch {
                let r = db.tx(true, |t| -> Result<(), DbError> {
                    if task.run(t) {
                        Ok(())
                    } else {
                        Err(DbError::Group("rolled back".into()))
                    }
                });
                task.finish(r);
            }
        }
        Err(e) => {
            // A batch of one: its own error, or the commit's.
            if let Some(task) = batch.into_iter().next() {
                task.finish(Err(e));
            }
        }
    }
}

/// Starts a thread of its own that runs every batch of `db(&owner)`'s group (the
/// server: `owner` is its state, kept for the process's life). Started from a thread at
/// normal priority, it keeps that priority while the request threads run at a lower one
/// (`KUNJUNG_REQUEST_NICE`, main.rs): the writer is the one serial step of every push,
/// and on a busy machine, sharing the CPU equally with the requests it serves, it fell
/// behind and every push queued behind it.
pub fn spawn_writer<S: Send + Sync + 'static>(
    owner: std::sync::Arc<S>,
    db: fn(&S) -> &Db,
) -> std::io::Result<()> {
    db(&owner)
        .group()
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .dedicated = true;
    let back = owner.clone();
    let run = move || {
        let d = db(&owner);
        let group = d.group();
        // Should this thread ever end (a panic outside the pieces, which are caught), the
        // callers go back to running their batches themselves instead of waiting forever;
        // the pieces it held or that were queued answer their callers with an error.
        struct Gone<'a>(&'a Group);
        impl Drop for Gone<'_> {
            fn drop(&mut self) {
                let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
                st.dedicated = false;
                st.writing = false;
                let queued = std::mem::take(&mut st.queue);
                drop(st);
                drop(queued);
                self.0.done.notify_all();
            }
        }
        let _gone = Gone(group);
        let mut st = group.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.queue.is_empty() {
                st = group.work.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let batch = std::mem::take(&mut st.queue);
            drop(st);
            run_batch(d, group, batch);
            st = group.state.lock().unwrap_or_else(|e| e.into_inner());
        }
    };
    match std::thread::Builder::new().name("writer".into()).spawn(run) {
        Ok(_) => Ok(()),
        Err(e) => {
            db(&back)
                .group()
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .dedicated = false;
            Err(e)
        }
    }
}

impl Group {
    /// Runs `f` in a serialized transaction shared with the other work queued meanwhile;
    /// returns once that transaction has committed. `f` may run twice (see the module
    /// documentation); only the run whose transaction committed counts.
    pub fn run<T, E, F>(&self, db: &Db, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: Fn(&mut dyn Sql) -> Result<T, E> + Send + 'static,
    {
        let slot = Arc::new(Slot {
            out: Mutex::new(None),
            ready: Condvar::new(),
        });
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.queue.push(Box::new(Work {
            f,
            out: None,
            slot: slot.clone(),
            finished: false,
        }));
        if st.dedicated {
            // The writer answers through the slot, waking this thread alone.
            self.work.notify_one();
            drop(st);
            let mut out = slot.out.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(r) = out.take() {
                    return r;
                }
                out = slot.ready.wait(out).unwrap_or_else(|e| e.into_inner());
            }
        }
        // No dedicated writer (tests, the command line): whoever finds no one writing
        // runs everything queued.
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            if st.writing {
                st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.writing = true;
            let batch = std::mem::take(&mut st.queue);
            drop(st);
            run_batch(db, self, batch);
            st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.writing = false;
            self.done.notify_all();
        }
    }

    /// Batches run so far and the pieces of work they held.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.pieces.load(Ordering::Relaxed),
        )
    }
}
