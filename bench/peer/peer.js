#!/usr/bin/env node
// The peer side of `cargo xtask bench`: PouchDB 9 (leveldb) on the "device", replicating
// with PouchDB's own replication to a pouchdb-server 4.2.0 (express-pouchdb, gzip on) on
// loopback, with CHT's document model (a place doc per household, a person doc per member,
// a report doc per visit). xtask drives it; every command prints one JSON line on stdout.
//
//   load <db-url> <docs.jsonl>                  bulk-load the server (not through the proxy)
//   replicate <db-url> <dir>                    first sync: fresh leveldb <- server
//   mark <db-url> <dir>                         push checkpoint (a device that synced before)
//   push <db-url> <dir> <docs.jsonl>            end-of-day: put the day's reports, push them
//   many <db-url> <dir> <docs.jsonl> <n>        n devices sync at once: push their reports, pull their posyandu's
//   local <dir> <queries.json>                  local operations with CHT-style indexes
//   fill <dir> <docs.jsonl>                     bulk-load a local database
//   compact <dir>                               compaction; sizes before and after
//   count <dir>                                 documents in a local database
'use strict';

const fs = require('fs');
const path = require('path');
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-find'));

const now = () => Number(process.hrtime.bigint()) / 1e6;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function readJsonl(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

function dirSize(dir) {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? dirSize(p) : fs.statSync(p).size;
  }
  return n;
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * p))];
}

// Replication as a CHT device does it: PouchDB defaults (batch_size 100, batches_limit 10),
// no filter (the whole village is the device's scope), one shot.
async function replicate(from, to, opts = {}) {
  const r = await PouchDB.replicate(from, to, opts);
  if (r.doc_write_failures > 0 || r.errors.length > 0) {
    throw new Error(`replication failed: ${JSON.stringify(r.errors).slice(0, 500)}`);
  }
  return r;
}

const cmds = {
  async load(url, file) {
    const db = new PouchDB(url);
    await db.info();
    const docs = readJsonl(file);
    const t = now();
    for (let i = 0; i < docs.length; i += 2000) {
      const res = await db.bulkDocs(docs.slice(i, i + 2000));
      const bad = res.filter((r) => r.error);
      if (bad.length > 0) throw new Error(`load: ${JSON.stringify(bad[0])}`);
    }
    const info = await db.info();
    out({ loaded: docs.length, doc_count: info.doc_count, ms: now() - t });
  },

  async replicate(url, dir) {
    const local = new PouchDB(dir);
    const t = now();
    const r = await replicate(url, local);
    const ms = now() - t;
    const info = await local.info();
    const remote = await new PouchDB(url).info();
    await local.close();
    out({ ms, docs_written: r.docs_written, local_docs: info.doc_count, remote_docs: remote.doc_count, bytes: dirSize(dir) });
  },

  // The device pushed before (CHT syncs both ways): start the push from its current seq so
  // the timed push carries only the day's new reports, as on a real device.
  async mark(url, dir) {
    const local = new PouchDB(dir);
    const marker = { _id: `sync-marker-${Date.now()}`, type: 'marker' };
    const before = (await local.info()).update_seq;
    await local.put(marker);
    const r = await replicate(local, url, { since: before });
    await local.close();
    out({ docs_written: r.docs_written });
  },

  async push(url, dir, file) {
    const local = new PouchDB(dir);
    const docs = readJsonl(file);
    const res = await local.bulkDocs(docs);
    if (res.some((r) => r.error)) throw new Error('push: local write failed');
    const t = now();
    const r = await replicate(local, url);
    const ms = now() - t;
    await local.close();
    out({ ms, docs_written: r.docs_written });
  },

  async many(url, dir, file, n) {
    n = Number(n);
    fs.mkdirSync(dir, { recursive: true });
    const all = readJsonl(file);
    const devices = [];
    for (let d = 0; d < n; d++) {
      const db = new PouchDB(path.join(dir, `device-${d}`));
      // A device that has pushed before: one earlier report, pushed, so a checkpoint exists.
      const lines = all.filter((x) => x.device === d);
      const mine = lines.map((x) => x.doc);
      const first = mine.shift();
      await db.put(first);
      await replicate(db, url);
      await db.bulkDocs(mine);
      devices.push({ db, count: mine.length, place: lines[0].posyandu });
    }
    // CHT's end of day is two-way: the device also pulls what others wrote in its place.
    // CHT filtered replication by place with a design-document filter (`doc_by_place`);
    // pouchdb-server has no `_selector` filter, so the same here: reports of the device's
    // posyandu, the Kunjung kader's scope.
    const remote = new PouchDB(url);
    try {
      await remote.put({
        _id: '_design/scope',
        filters: {
          by_place: 'function (doc, req) { var c = doc.contact; return !!(c && c.parent && c.parent.parent && c.parent.parent._id === req.query.place); }',
        },
      });
    } catch (e) {
      if (e.status !== 409) throw e;
    }
    // The pulls start from now, as if each device had caught up earlier in the day.
    const since = (await remote.info()).update_seq;
    // Ready: xtask reads the server's CPU time, then says go.
    out({ ready: true });
    await new Promise((resolve) => process.stdin.once('data', resolve));
    process.stdin.pause();
    const t0 = now();
    const pulled = [];
    const times = await Promise.all(devices.map(async ({ db, place }) => {
      const t = now();
      await replicate(db, url);
      const r = await replicate(url, db, { filter: 'scope/by_place', query_params: { place }, since });
      pulled.push(r.docs_written);
      return now() - t;
    }));
    const total = now() - t0;
    for (const { db } of devices) await db.close();
    times.sort((a, b) => a - b);
    out({ total_ms: total, p50_ms: pct(times, 0.5), p99_ms: pct(times, 0.99), devices: n, docs: devices.reduce((a, d) => a + d.count, 0), pulled: pulled.reduce((a, b) => a + b, 0) });
  },

  async local(dir, queriesFile) {
    const q = JSON.parse(fs.readFileSync(queriesFile, 'utf8'));
    // Index updates read the changes feed in batches of 50 by default; CHT's client raises
    // nothing here, but a large batch only makes the first (untimed) index build faster.
    const vopts = { view_update_changes_batch_size: 1000 };
    let db = new PouchDB(dir, vopts);
    // The indexes CHT's client uses for these screens (medic-client design doc):
    // contacts_by_freetext (every word of a contact's name, searched by prefix),
    // contacts_by_type (the list, sorted by name) and reports_by_subject.
    const ddoc = {
      _id: '_design/medic-client',
      views: {
        contacts_by_freetext: {
          map: `function (doc) {
            if (doc.type === 'clinic' || doc.type === 'person') {
              var words = (doc.name || '').toLowerCase().split(/\\s+/);
              for (var i = 0; i < words.length; i++) { if (words[i].length > 0) emit(words[i], doc.name); }
            }
          }`,
        },
        contacts_by_type: {
          map: `function (doc) { if (doc.type === 'clinic' || doc.type === 'person') emit([doc.type, (doc.name || '').toLowerCase()], null); }`,
        },
        reports_by_subject: {
          map: `function (doc) { if (doc.type === 'data_record' && doc.fields) emit(doc.fields.patient_uuid, doc.reported_date); }`,
        },
      },
    };
    try {
      const old = await db.get(ddoc._id);
      if (JSON.stringify(old.views) !== JSON.stringify(ddoc.views)) await db.put({ ...ddoc, _rev: old._rev });
    } catch (e) {
      if (e.status !== 404) throw e;
      await db.put(ddoc);
    }
    let t = now();
    for (const v of ['contacts_by_freetext', 'contacts_by_type', 'reports_by_subject']) {
      await db.query(`medic-client/${v}`, { limit: 0 });
    }
    const indexMs = now() - t;
    process.stderr.write(`peer.js local: indexes built in ${(indexMs / 1000).toFixed(1)} s\n`);
    await db.close();

    const openPage = [];
    for (let i = 0; i < 15; i++) {
      t = now();
      db = new PouchDB(dir, vopts);
      const page = await db.query('medic-client/contacts_by_type', {
        startkey: ['clinic'], endkey: ['clinic', '\ufff0'], limit: 50, include_docs: true,
      });
      if (page.rows.length !== 50) throw new Error(`first page has ${page.rows.length} rows`);
      openPage.push(now() - t);
      if (i < 14) await db.close();
    }
    // Search as Kunjung's queries do: every word is a prefix; CHT looks up the longest word
    // in contacts_by_freetext and filters the rest on the documents.
    const search = [];
    for (const text of q.searches) {
      const words = text.toLowerCase().split(/\s+/).filter((w) => w.length > 0);
      const longest = words.reduce((a, b) => (b.length > a.length ? b : a));
      t = now();
      const r = await db.query('medic-client/contacts_by_freetext', {
        startkey: longest, endkey: longest + '\ufff0', include_docs: true, limit: words.length > 1 ? 200 : 20,
      });
      const hits = r.rows.filter((row) => {
        const names = (row.doc.name || '').toLowerCase().split(/\s+/);
        return words.every((w) => names.some((n) => n.startsWith(w)));
      }).slice(0, 20);
      search.push(now() - t);
      if (hits.length === 0) throw new Error(`no hit for ${text}`);
    }
    // Add a visit: the form saves its report, then the patient's page lists the reports
    // (the view catches up with the new document).
    const add = [];
    for (const doc of q.visits) {
      t = now();
      await db.put(doc);
      await db.query('medic-client/reports_by_subject', { key: doc.fields.patient_uuid, limit: 50 });
      add.push(now() - t);
    }
    await db.close();
    for (const a of [openPage, search, add]) a.sort((x, y) => x - y);
    out({
      index_ms: indexMs,
      open_page_p50: pct(openPage, 0.5), open_page_p95: pct(openPage, 0.95),
      search_p50: pct(search, 0.5), search_p95: pct(search, 0.95),
      add_p50: pct(add, 0.5), add_p95: pct(add, 0.95),
    });
  },

  // Bulk-loads documents into a local database (the 20,000-household device of workload 4).
  async fill(dir, file) {
    const db = new PouchDB(dir);
    const docs = readJsonl(file);
    for (let i = 0; i < docs.length; i += 2000) {
      const res = await db.bulkDocs(docs.slice(i, i + 2000));
      if (res.some((r) => r.error)) throw new Error('fill: write failed');
    }
    const info = await db.info();
    await db.close();
    out({ doc_count: info.doc_count });
  },

  // Sizes are taken with the database closed after a reopen, so leveldb has written its
  // log into tables (the size a device keeps between sessions).
  async compact(dir) {
    let db = new PouchDB(dir);
    const info = await db.info();
    await db.close();
    const before = dirSize(dir);
    db = new PouchDB(dir);
    await db.compact();
    await db.close();
    db = new PouchDB(dir);
    await db.info();
    await db.close();
    out({ before, after: dirSize(dir), doc_count: info.doc_count });
  },

  async count(dir) {
    const db = new PouchDB(dir);
    const info = await db.info();
    await db.close();
    out({ doc_count: info.doc_count });
  },
};

const [cmd, ...args] = process.argv.slice(2);
if (!cmds[cmd]) {
  process.stderr.write(`peer.js: unknown command ${cmd}\n`);
  process.exit(2);
}
cmds[cmd](...args).catch((e) => {
  process.stderr.write(`peer.js ${cmd}: ${e.stack || e}\n`);
  process.exit(1);
});
