//! The entry points of the fuzz targets in `fuzz/`, kept in the library so that the targets and the
//! normal test run (which replays the committed seed corpora) call exactly the same code. Each must
//! return on any input and never allocate without bound. The parsers' targets never panic; the
//! store's target panics exactly when the redb backend and the memory model disagree, which is the
//! bug it looks for.

use crate::api;
use crate::crypto::openpgp::{inspect_binary_message, inspect_message, validate_public_key};
use crate::http::body;
use std::any::Any;

use crate::store::{Batch, Entry, Keyspace, MemoryStore, Outcome, Plan, RedbStore, Store, Timestamp};

/// Armored public keys (`fuzz_targets/public_key.rs`). The input is tried twice: as lossy UTF-8 text
/// (the armor parser), and as packet bytes wrapped in a well-formed armor block, because random bytes
/// seldom get past the armor and the packet, composition and signature checks are where rPGP does most
/// of its work.
pub fn public_key(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = validate_public_key(&text, 1_700_000_000);
    let _ = validate_public_key(&text, u64::MAX);
    let _ = validate_public_key(&armored(data), 1_700_000_000);
}

/// `data` as the body of a PGP PUBLIC KEY BLOCK (without the optional checksum line).
fn armored(data: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::from("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PGP PUBLIC KEY BLOCK-----\n");
    out
}

/// Armored and binary messages (`fuzz_targets/message.rs`).
pub fn message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = inspect_message(&text, 64 * 1024);
    let _ = inspect_binary_message(data, 64 * 1024);
}

/// Request bodies of every surface (`fuzz_targets/request_body.rs`): the JSON bodies of the
/// client-encrypted and request routes, and the v1 dialect's form, JSON and multipart parameters.
pub fn request_body(data: &[u8]) {
    let _ = api::decode_json::<api::client::CreateSecret>(data);
    let _ = api::decode_json::<api::requests::CreateRequest>(data);
    let _ = api::decode_json::<api::requests::SubmitSecret>(data);
    let _ = api::decode_json::<api::requests::RotateKey>(data);
    let _ = body::parse_form(data);
    let _ = api::ots_v1::decode_params(data, Some("application/json"));
    let _ = api::ots_v1::decode_params(data, Some("multipart/form-data; boundary=b0undary"));
    let _ = api::ots_v1::decode_params(data, None);
}

/// The store's contract, differentially (`fuzz_targets/store.rs`): `data` is read as a program of
/// batches, plans (reads and the batch they decide, in one step), reads, purges and clock steps, run
/// against the memory backend (the reference model) and against redb (on its in-memory backend,
/// through the same layout and group-commit writer); every answer must agree. Keys are one or two bytes from a three-letter alphabet, so keys collide and
/// prefix one another, and keyspaces include both a listed one and three that redb keeps in one table.
pub fn store(data: &[u8]) {
    let Ok(redb) = RedbStore::open_in_memory(crate::domain::KEYSPACES) else { return };
    let model = MemoryStore::new();
    let mut program = Program { data, now: 1_000 };
    while !program.data.is_empty() {
        program.step(&model, &redb);
    }
    purge_all(&model, &redb, program.now);
    assert_eq!(everything(&model, program.now), everything(&redb, program.now), "visit_all");
}

/// The rest of a fuzz input, read a byte at a time (zero once it runs out), and the clock.
struct Program<'a> {
    data: &'a [u8],
    now: Timestamp,
}

impl Program<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn keyspace(&mut self) -> Keyspace {
        [
            crate::domain::secrets::SECRET,
            crate::domain::secrets::METADATA,
            crate::domain::secrets::ATTEMPTS,
            crate::domain::accounts::RECENT,
        ][usize::from(self.byte() % 4)]
    }

    fn key(&mut self) -> Vec<u8> {
        let len = 1 + self.byte() % 2;
        (0..len).map(|_| self.byte() % 3).collect()
    }

    /// Never, or a time from just past to a little ahead, so some puts are already expired.
    fn expiry(&mut self) -> Option<Timestamp> {
        match self.byte() % 4 {
            0 => None,
            b => Some(self.now - 2 + u64::from(b) * u64::from(self.byte() % 4)),
        }
    }

    fn step(&mut self, model: &MemoryStore, redb: &RedbStore) {
        let now = self.now;
        match self.byte() % 7 {
            0 => {
                let mut batch = Batch::new();
                for _ in 0..self.byte() % 3 {
                    let (ks, key) = (self.keyspace(), self.key());
                    batch = match self.byte() % 3 {
                        0 => batch.require_absent(ks, key),
                        1 => batch.require_present(ks, key),
                        _ => batch.require_version(ks, key, u64::from(self.byte() % 4)),
                    };
                }
                for _ in 0..=self.byte() % 3 {
                    let (ks, key) = (self.keyspace(), self.key());
                    batch = match self.byte() % 3 {
                        0 => batch.put(ks, key, vec![self.byte()], self.expiry()),
                        1 => batch.delete(ks, key),
                        _ => batch.take(ks, key),
                    };
                }
                assert_eq!(model.apply(batch.clone(), now).ok(), redb.apply(batch, now).ok(), "apply");
            }
            1 => {
                let (ks, key) = (self.keyspace(), self.key());
                assert_eq!(model.get(ks, &key, now).ok(), redb.get(ks, &key, now).ok(), "get");
            }
            2 => {
                let ks = self.keyspace();
                let prefix: Vec<u8> = (0..self.byte() % 2).map(|_| self.byte() % 3).collect();
                let limit = usize::from(self.byte() % 5);
                let scan = |s: &dyn Store| s.scan_prefix(ks, &prefix, now, limit).ok();
                assert_eq!(scan(model), scan(redb), "scan_prefix");
            }
            3 => {
                // A partial purge may pick different entries of equal expiry in each backend, or stop
                // early in redb; neither shows in reads, and counts are compared after full purges.
                let limit = 1 + usize::from(self.byte() % 3);
                let _ = model.purge_expired(now, limit);
                let _ = redb.purge_expired(now, limit);
            }
            4 => purge_all(model, redb, now),
            5 => {
                let (ks_a, a, ks_b, b) = (self.keyspace(), self.key(), self.keyspace(), self.key());
                let (mark, expires_at, create) = (self.byte(), self.expiry(), self.byte().is_multiple_of(2));
                // Moves `a` to `b` (marked) if it is there, or creates it, or writes nothing: a batch
                // that depends on what the plan read.
                let plan = || -> Plan {
                    let (a, b) = (a.clone(), b.clone());
                    Box::new(move |lookup| {
                        // `b` first: the batch's condition is then on the plan's second read.
                        let b_read = lookup.get(ks_b, &b)?;
                        let read = (lookup.get(ks_a, &a)?, b_read);
                        let batch = match &read.0 {
                            Some(entry) => {
                                let moved = [entry.value.as_slice(), &[mark]].concat();
                                Some(
                                    Batch::new()
                                        .require_version(ks_a, a.clone(), entry.version)
                                        .take(ks_a, a.clone())
                                        .put(ks_b, b.clone(), moved, expires_at),
                                )
                            }
                            None if create => Some(Batch::new().require_absent(ks_a, a.clone()).put(
                                ks_a,
                                a.clone(),
                                vec![mark],
                                expires_at,
                            )),
                            None => None,
                        };
                        Ok((batch, Box::new(read) as Box<dyn Any + Send>))
                    })
                };
                assert_eq!(planned(model, plan(), now), planned(redb, plan(), now), "apply_planned");
            }
            _ => self.now += u64::from(self.byte() % 6),
        }
    }
}

type Reads = (Option<Entry>, Option<Entry>);

/// What a plan of the store program read and what its batch did, or `None` if it failed.
fn planned(store: &dyn Store, plan: Plan, now: Timestamp) -> Option<(Reads, Option<Outcome>)> {
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    store.apply_planned(
        plan,
        now,
        Box::new(move |result| {
            let _ = reply.send(result);
        }),
    );
    let planned = answer.recv().ok()?.ok()?;
    let reads = planned.report.downcast::<Reads>().ok()?;
    Some((*reads, planned.outcome))
}

/// Purges both stores of everything due at `now`, then compares what remains.
fn purge_all(model: &MemoryStore, redb: &RedbStore, now: Timestamp) {
    for store in [model as &dyn Store, redb] {
        while store.purge_expired(now, 4).is_ok_and(|removed| removed > 0) {}
    }
    for &ks in crate::domain::KEYSPACES {
        assert_eq!(model.count(ks).ok(), redb.count(ks).ok(), "count after a full purge");
    }
    // redb may name a removed entry's time, never one later than the model's earliest.
    match (model.next_expiry().ok().flatten(), redb.next_expiry().ok().flatten()) {
        (Some(expected), Some(found)) => assert!(found <= expected, "next_expiry is late"),
        (Some(_), None) => panic!("next_expiry missed an entry"),
        _ => {}
    }
}

fn everything(store: &dyn Store, now: Timestamp) -> Vec<(Keyspace, Vec<u8>, Entry)> {
    let mut all = Vec::new();
    let walked = store.visit_all(now, &mut |ks, key, entry| {
        all.push((ks, key.to_vec(), entry.clone()));
        Ok(())
    });
    assert!(walked.is_ok(), "visit_all failed");
    all.sort_by(|a, b| (a.0.tag(), &a.1).cmp(&(b.0.tag(), &b.1)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every committed seed through every entry point, so a seed that once crashed stays fixed
    /// without running the fuzzer.
    #[test]
    fn seed_corpora_never_panic() {
        let mut seen = 0;
        for target in ["public_key", "message", "request_body"] {
            let dir = format!("{}/fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
                let data = std::fs::read(entry.expect("corpus entry").path()).expect("seed");
                public_key(&data);
                message(&data);
                request_body(&data);
                seen += 1;
            }
        }
        assert!(seen >= 15, "only {seen} seeds found");
    }

    /// The store's seeds, and five hundred programs from a fixed pseudo-random stream: the contract is
    /// checked on every test run, and the fuzzer searches further.
    #[test]
    fn the_redb_backend_agrees_with_the_model() {
        let dir = format!("{}/fuzz/corpus/store", env!("CARGO_MANIFEST_DIR"));
        let mut seeds = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            store(&std::fs::read(entry.expect("corpus entry").path()).expect("seed"));
            seeds += 1;
        }
        assert!(seeds >= 3, "only {seeds} store seeds found");
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..500 {
            let program: Vec<u8> = (0..400)
                .map(|_| {
                    // xorshift64: deterministic, and plenty for choosing operations.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            store(&program);
        }
    }
}
