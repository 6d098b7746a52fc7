'use strict';
// Client conformance: the public dicomweb-client library (as OHIF and other viewers use it)
// searches and retrieves through nirproxy, against the integration data set.
//
// Environment:
//   NIRPROXY_URL       the proxy's base URL ("http://127.0.0.1:8080") or its DICOMweb root
//                      ("http://127.0.0.1:8080/dicom-web")
//   NIRPROXY_MANIFEST  the data set's manifest.json (test/scripts/make-testdata.sh prints it)
//   NIRPROXY_TOKEN     a bearer token the proxy accepts (a direct-care caller of an onboarded
//                      organisation), sent on every request as a viewer would
//
// Run from this directory: `npm ci && node --test`. The Go test TestDicomwebClientConformance
// in test/integration runs it against the proxy it starts.

// dicomweb-client expects a browser; xhr2 supplies XMLHttpRequest on Node 20.
global.XMLHttpRequest = require('xhr2');

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { api } = require('dicomweb-client');

const base = process.env.NIRPROXY_URL;
const manifestPath = process.env.NIRPROXY_MANIFEST;
const token = process.env.NIRPROXY_TOKEN;
if (!base || !manifestPath || !token) {
  throw new Error('set NIRPROXY_URL (the running proxy), NIRPROXY_MANIFEST (the data set manifest) and NIRPROXY_TOKEN (a bearer token it accepts)');
}
const root = base.replace(/\/+$/, '').replace(/(\/dicom-web)?$/, '/dicom-web');
const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
const client = new api.DICOMwebClient({ url: root, headers: { Authorization: `Bearer ${token}` } });

const ALPHA = '9434765919';
const BRAVO = '9449306052';

const study = (key) => manifest.studies.find((s) => s.key === key);
const series = (st, key) => st.series.find((s) => s.key === key);
const instances = (st) => st.series.flatMap((s) => s.instances);
const value = (ds, tag) => (ds[tag] && ds[tag].Value ? ds[tag].Value[0] : undefined);
const values = (ds, tag) => (ds[tag] && ds[tag].Value ? ds[tag].Value : []);
const sortedUIDs = (list, tag) => list.map((ds) => value(ds, tag)).sort();
const asBytes = (buf) => new Uint8Array(buf);
const isDICOM = (buf) => buf.byteLength > 132 && Buffer.from(buf).toString('latin1', 128, 132) === 'DICM';

const shared = study('SHARED');
const ct = series(shared, 'SHARED_CT').instances[0];
const ot = series(shared, 'SHARED_OT');
const mr = series(shared, 'SHARED_MR');

test('searchForStudies: a patient at both trusts gets every study once, holders named', async () => {
  const studies = await client.searchForStudies({ queryParams: { PatientID: ALPHA } });
  const want = manifest.studies.filter((s) => s.patientID === ALPHA).map((s) => s.studyInstanceUID).sort();
  assert.deepEqual(sortedUIDs(studies, '0020000D'), want);
  const merged = studies.find((ds) => value(ds, '0020000D') === shared.studyInstanceUID);
  assert.deepEqual([...values(merged, '00080054')].sort(), ['ORA', 'ORB']);
  for (const ds of studies) {
    const retrieveURL = value(ds, '00081190');
    if (retrieveURL !== undefined) {
      assert.ok(retrieveURL.startsWith(root + '/'), `RetrieveURL ${retrieveURL} does not point at ${root}`);
    }
  }
});

test('searchForStudies: a patient at one trust', async () => {
  const studies = await client.searchForStudies({ queryParams: { PatientID: BRAVO } });
  assert.deepEqual(sortedUIDs(studies, '0020000D'), [study('BRAVO_A').studyInstanceUID]);
  assert.deepEqual(values(studies[0], '00080054'), ['ORA']);
});

test('searchForSeries: every series of the shared study, from both copies', async () => {
  const found = await client.searchForSeries({ studyInstanceUID: shared.studyInstanceUID });
  assert.deepEqual(sortedUIDs(found, '0020000E'), shared.series.map((s) => s.seriesInstanceUID).sort());
});

test('searchForInstances: study and series level', async () => {
  const all = await client.searchForInstances({ studyInstanceUID: shared.studyInstanceUID });
  assert.deepEqual(sortedUIDs(all, '00080018'), instances(shared).map((i) => i.sopInstanceUID).sort());
  const inSeries = await client.searchForInstances({
    studyInstanceUID: shared.studyInstanceUID,
    seriesInstanceUID: mr.seriesInstanceUID,
  });
  assert.deepEqual(sortedUIDs(inSeries, '00080018'), mr.instances.map((i) => i.sopInstanceUID).sort());
});

test('retrieveStudyMetadata: the union of both copies, each instance once', async () => {
  const metadata = await client.retrieveStudyMetadata({ studyInstanceUID: shared.studyInstanceUID });
  assert.deepEqual(sortedUIDs(metadata, '00080018'), instances(shared).map((i) => i.sopInstanceUID).sort());
});

test('retrieveSeriesMetadata: a series only the second trust holds', async () => {
  const metadata = await client.retrieveSeriesMetadata({
    studyInstanceUID: shared.studyInstanceUID,
    seriesInstanceUID: ot.seriesInstanceUID,
  });
  assert.equal(metadata.length, 1);
  assert.equal(value(metadata[0], '00080018'), ot.instances[0].sopInstanceUID);
  assert.equal(Number(value(metadata[0], '00280008')), 2);
});

test('retrieveInstance: the stored file, byte for byte', async () => {
  const buf = await client.retrieveInstance({
    studyInstanceUID: shared.studyInstanceUID,
    seriesInstanceUID: series(shared, 'SHARED_CT').seriesInstanceUID,
    sopInstanceUID: ct.sopInstanceUID,
  });
  const want = fs.readFileSync(path.join(manifest.dir, ct.file));
  assert.ok(isDICOM(buf), 'not a DICOM file');
  assert.equal(buf.byteLength, want.length);
  assert.ok(Buffer.from(buf).equals(want), 'instance bytes differ from the stored file');
});

test('retrieveStudy: every instance of both copies, each once', async () => {
  const parts = await client.retrieveStudy({ studyInstanceUID: shared.studyInstanceUID });
  const want = instances(shared);
  assert.equal(parts.length, want.length);
  for (const inst of want) {
    const holding = parts.filter((p) => Buffer.from(p).includes(inst.sopInstanceUID, 0, 'latin1'));
    assert.equal(holding.length, 1, `instance ${inst.key} is in ${holding.length} parts`);
  }
  for (const p of parts) {
    assert.ok(isDICOM(p), 'a part is not a DICOM file');
  }
});

test('retrieveInstanceFrames: both frames of a multi-frame RLE instance, decompressed', async () => {
  const inst = ot.instances[0];
  const frames = await client.retrieveInstanceFrames({
    studyInstanceUID: shared.studyInstanceUID,
    seriesInstanceUID: ot.seriesInstanceUID,
    sopInstanceUID: inst.sopInstanceUID,
    frameNumbers: [1, 2],
  });
  assert.equal(frames.length, 2);
  for (const f of frames) {
    assert.equal(f.byteLength, inst.rows * inst.columns * 3, 'an RGB 8-bit frame');
  }
});

test('retrieveInstanceRendered: a JPEG', async () => {
  const rendered = await client.retrieveInstanceRendered({
    studyInstanceUID: shared.studyInstanceUID,
    seriesInstanceUID: series(shared, 'SHARED_CT').seriesInstanceUID,
    sopInstanceUID: ct.sopInstanceUID,
    mediaTypes: [{ mediaType: 'image/jpeg' }],
  });
  const buf = asBytes(Array.isArray(rendered) ? rendered[0] : rendered);
  assert.ok(buf.byteLength > 100, `rendered image of ${buf.byteLength} bytes`);
  assert.deepEqual([...buf.slice(0, 3)], [0xff, 0xd8, 0xff], 'not a JPEG');
});

test('retrieveBulkData: pixel data through the signed bulk data link', async () => {
  const metadata = await client.retrieveInstanceMetadata({
    studyInstanceUID: shared.studyInstanceUID,
    seriesInstanceUID: series(shared, 'SHARED_CT').seriesInstanceUID,
    sopInstanceUID: ct.sopInstanceUID,
  });
  const uri = metadata[0]['7FE00010'].BulkDataURI;
  assert.ok(uri && uri.startsWith(root + '/bulkdata/'), `BulkDataURI ${uri} is not a proxy bulk data link`);
  const parts = await client.retrieveBulkData({ BulkDataURI: uri });
  const total = (Array.isArray(parts) ? parts : [parts]).reduce((n, p) => n + p.byteLength, 0);
  assert.equal(total, ct.rows * ct.columns * 2, 'CT pixel data is 16 bits a pixel');
});
