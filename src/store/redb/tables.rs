//! The tables of one write transaction: conditions checked from entry headers, mutations applied,
//! the expiry index and the per-keyspace counts kept in step.

use super::*;

pub(super) type BytesTable<'txn> = Table<'txn, &'static [u8], &'static [u8]>;

/// The header (`None`: no row) of an entry read in the current transaction.
pub(super) type Known = (Keyspace, Vec<u8>, Option<Header>);

/// Every table of one write transaction, opened once per group.
pub(super) struct Tables<'txn> {
    records: BytesTable<'txn>,
    /// The listed keyspaces' tables, in the order the store was given them.
    listed: Vec<(Keyspace, BytesTable<'txn>)>,
    /// Every keyspace the store serves, to read an index row's tag.
    keyspaces: &'txn [Keyspace],
    expiry: BytesTable<'txn>,
    meta: Table<'txn, &'static str, &'static [u8]>,
    /// Entries added minus entries removed in this transaction, by keyspace tag.
    added: [i64; TAGS],
    /// Whether anything was changed: a group of plans that only read has nothing to commit.
    pub(super) wrote: bool,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(
        txn: &'txn WriteTransaction,
        keyspaces: &'txn [Keyspace],
    ) -> Result<Tables<'txn>, StoreError> {
        let mut listed = Vec::new();
        for ks in keyspaces.iter().copied().filter(|ks| ks.is_listed()) {
            listed.push((ks, txn.open_table(listed_table(ks)).map_err(io_error)?));
        }
        Ok(Tables {
            records: txn.open_table(RECORDS).map_err(io_error)?,
            listed,
            keyspaces,
            expiry: txn.open_table(EXPIRY).map_err(io_error)?,
            meta: txn.open_table(META).map_err(io_error)?,
            added: [0; TAGS],
            wrote: false,
        })
    }

    /// The table an entry of `ks` lives in, and its row key there.
    pub(super) fn place<'k>(
        &mut self,
        ks: Keyspace,
        key: &'k [u8],
    ) -> Result<(&mut BytesTable<'txn>, Cow<'k, [u8]>), StoreError> {
        if !ks.is_listed() {
            return Ok((&mut self.records, Cow::Owned(record_key(ks, key))));
        }
        self.listed
            .iter_mut()
            .find(|(k, _)| *k == ks)
            .map(|(_, table)| (table, Cow::Borrowed(key)))
            .ok_or_else(|| StoreError::Io(format!("table {} is not open", ks.name())))
    }

    pub(super) fn counted(&mut self, ks: Keyspace, delta: i64) {
        if let Some(added) = self.added.get_mut(usize::from(ks.tag())) {
            *added += delta;
        }
    }

    /// Writes this transaction's changes to the entry counts, if any.
    pub(super) fn finish(&mut self) -> Result<(), StoreError> {
        if self.added.iter().all(|&d| d == 0) {
            return Ok(());
        }
        let stored = self.meta.get(COUNTS_ROW).map_err(io_error)?.map(|v| decode_counts(v.value()));
        let mut counts = stored.unwrap_or_default();
        for (count, added) in counts.iter_mut().zip(self.added) {
            *count = count.saturating_add_signed(added);
        }
        self.meta.insert(COUNTS_ROW, encode_counts(&counts).as_slice()).map_err(io_error)?;
        self.added = [0; TAGS];
        Ok(())
    }

    /// The header of the entry under `key`, live or not.
    pub(super) fn header(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Header>, StoreError> {
        let (table, row) = self.place(ks, key)?;
        match table.get(row.as_ref()).map_err(io_error)? {
            Some(bytes) => Header::decode(bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Removes the entry, and returns what `read` makes of its stored bytes if there was one. Its index
    /// row stays for the purge (see the module docs).
    pub(super) fn remove_with<T>(
        &mut self,
        ks: Keyspace,
        key: &[u8],
        read: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let (table, row) = self.place(ks, key)?;
        let old = match table.remove(row.as_ref()).map_err(io_error)? {
            Some(bytes) => Some(read(bytes.value())?),
            None => None,
        };
        if old.is_some() {
            self.counted(ks, -1);
            self.wrote = true;
        }
        Ok(old)
    }

    /// Removes the entry without decoding it.
    pub(super) fn remove(&mut self, ks: Keyspace, key: &[u8]) -> Result<(), StoreError> {
        self.remove_with(ks, key, |_| Ok(())).map(drop)
    }

    /// Removes the entry and returns what was stored, live or not.
    pub(super) fn take(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        self.remove_with(ks, key, Stored::decode)
    }

    /// Stores `value` under `header`, replacing an entry whose expiry was `old_expiry`.
    pub(super) fn insert(
        &mut self,
        ks: Keyspace,
        key: &[u8],
        header: Header,
        value: &[u8],
        old_expiry: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.wrote = true;
        let (table, row) = self.place(ks, key)?;
        let replaced =
            table.insert(row.as_ref(), header.encode(value).as_slice()).map_err(io_error)?.is_some();
        if !replaced {
            self.counted(ks, 1);
        }
        // An overwrite that keeps its expiry (a metadata state change, say) keeps its index row:
        // two B-tree writes fewer per commit on the hot path.
        if old_expiry != header.expires_at {
            if let Some(at) = old_expiry {
                self.expiry.remove(index_key(at, ks, key).as_slice()).map_err(io_error)?;
            }
            if let Some(at) = header.expires_at {
                self.expiry.insert(index_key(at, ks, key).as_slice(), [].as_slice()).map_err(io_error)?;
            }
        }
        Ok(())
    }

    pub(super) fn apply(&mut self, batch: &Batch, now: Timestamp) -> Result<Outcome, StoreError> {
        self.apply_knowing(batch, now, &[])
    }

    /// [`Tables::apply`], given the headers of entries read in this transaction since the last write:
    /// a plan's conditions are on what it has just read, and need not look again.
    pub(super) fn apply_knowing(
        &mut self,
        batch: &Batch,
        now: Timestamp,
        known: &[Known],
    ) -> Result<Outcome, StoreError> {
        // Headers the conditions read, until a mutation changes their key: a put after a condition on
        // its key (every create) then needs no second lookup for its version.
        let mut seen: Vec<(Keyspace, &[u8], Option<Header>)> = Vec::with_capacity(batch.conditions.len());
        for (i, condition) in batch.conditions.iter().enumerate() {
            let (ks, key) = target(condition);
            let header = match known.iter().find(|(k, s, _)| *k == ks && s.as_slice() == key) {
                Some((_, _, header)) => *header,
                None => self.header(ks, key)?,
            };
            seen.push((ks, key, header));
            if !holds(condition, header, now) {
                return Ok(Outcome::Conflict(i));
            }
        }
        let mut taken = Vec::with_capacity(batch.mutations.len());
        for mutation in &batch.mutations {
            taken.push(self.mutate(mutation, now, &mut seen)?);
        }
        Ok(Outcome::Applied(taken))
    }

    pub(super) fn mutate(
        &mut self,
        mutation: &Mutation,
        now: Timestamp,
        seen: &mut Vec<(Keyspace, &[u8], Option<Header>)>,
    ) -> Result<Option<Entry>, StoreError> {
        // The header a condition saw for this entry, which no longer holds once it is mutated.
        let mut forget = |ks: Keyspace, key: &[u8]| {
            let header = seen.iter().find(|(k, s, _)| *k == ks && *s == key).map(|(_, _, h)| *h);
            seen.retain(|(k, s, _)| !(*k == ks && *s == key));
            header
        };
        match mutation {
            Mutation::Put { ks, key, value, expires_at } => {
                let old = match forget(*ks, key) {
                    Some(header) => header,
                    None => self.header(*ks, key)?,
                };
                let version = old.filter(|h| h.is_live(now)).map_or(1, |h| h.version.saturating_add(1));
                let header = Header { version, expires_at: *expires_at };
                if header.is_live(now) {
                    self.insert(*ks, key, header, value, old.and_then(|h| h.expires_at))?;
                } else {
                    self.remove(*ks, key)?;
                }
                Ok(None)
            }
            Mutation::Delete { ks, key } => {
                forget(*ks, key);
                self.remove(*ks, key)?;
                Ok(None)
            }
            Mutation::Take { ks, key } => {
                forget(*ks, key);
                Ok(self.take(*ks, key)?.filter(|old| old.is_live(now)).map(Stored::into_entry))
            }
        }
    }

    /// Runs a plan and applies its batch. The outer error is the group's (its batch failed part-way);
    /// the inner one is the plan's alone (it failed or panicked before writing anything).
    pub(super) fn plan(
        &mut self,
        plan: Option<Plan>,
        now: Timestamp,
    ) -> Result<Result<Planned, StoreError>, StoreError> {
        struct Reads<'a, 'txn> {
            tables: &'a mut Tables<'txn>,
            now: Timestamp,
            known: Vec<Known>,
        }
        impl Lookup for Reads<'_, '_> {
            fn get(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Entry>, StoreError> {
                let (table, row) = self.tables.place(ks, key)?;
                let stored = read_entry(table, &row)?;
                self.known.push((ks, key.to_vec(), stored.as_ref().map(|s| s.header)));
                Ok(stored.filter(|s| s.is_live(self.now)).map(Stored::into_entry))
            }
        }
        let Some(mut plan) = plan else {
            return Ok(Err(StoreError::Io("a plan was run twice".into())));
        };
        // The plan is the caller's code on the one thread every write needs: a panic in it must not
        // take the writer down.
        let mut reads = Reads { tables: self, now, known: Vec::new() };
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan(&mut reads)));
        let known = reads.known;
        let (batch, report) = match planned {
            Ok(Ok(planned)) => planned,
            Ok(Err(err)) => return Ok(Err(err)),
            Err(_) => return Ok(Err(StoreError::Io("a write plan panicked".into()))),
        };
        let outcome = batch.map(|batch| self.apply_knowing(&batch, now, &known)).transpose()?;
        Ok(Ok(Planned { report, outcome }))
    }

    /// Removes up to `limit` entries due at `now`, oldest expiry first.
    pub(super) fn purge(&mut self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        // Rows of entries already removed do not count against `limit`, but they bound the pass too,
        // so one transaction stays short however many of them are due.
        let max_rows = limit.saturating_mul(STALE_ROWS_PER_ENTRY);
        let mut due = Vec::new();
        for row in self.expiry.iter().map_err(io_error)? {
            if due.len() >= max_rows {
                break;
            }
            let (row, _) = row.map_err(io_error)?;
            let row = row.value().to_vec();
            match parse_index_key(&row) {
                Some((at, _, _)) if at > now => break,
                _ => due.push(row),
            }
        }
        let mut removed = 0;
        for row in due {
            if removed >= limit {
                break;
            }
            if let Some((at, tag, key)) = parse_index_key(&row)
                && let Some(ks) = Keyspace::find(self.keyspaces, tag)
                && self.header(ks, key)?.is_some_and(|h| h.expires_at == Some(at))
            {
                self.remove(ks, key)?;
                removed += 1;
            }
            // The entry's own row, or a row whose entry is gone or expires at another time now.
            self.expiry.remove(row.as_slice()).map_err(io_error)?;
            self.wrote = true;
        }
        Ok(removed)
    }
}
