// Issue 8: a real Prometheus scrapes a live cotstream (with the metrics token, as an operator would
// configure it), loads our alert rules, and answers queries about the traffic we drive. promtool
// lints the live /metrics output; every query of the Grafana dashboard runs against the live data.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { startTestServer, metricValue, ROOT, type TestServer } from '../helpers/server.ts';
import { CotClient, sa, chat, sleep } from '../helpers/client.ts';
import { startPrometheus, promtool, scalar, type PrometheusServer } from '../helpers/prometheus.ts';
import { canonicalSerial } from '../../src/auth/serial.ts';

const TOKEN = 'prom-test-token-5f0c9a';
const RULES = path.join(ROOT, 'ops', 'prometheus', 'alerts.yml');
const DASHBOARD = path.join(ROOT, 'ops', 'grafana', 'cotstream.json');

describe('ops: a real Prometheus scraping cotstream', function () {
  this.timeout(60000);
  let pki: SharedPki;
  let srv: TestServer;
  let prom: PrometheusServer;
  const clients: CotClient[] = [];
  const scrape = async (): Promise<string> =>
    (await fetch(`http://127.0.0.1:${srv.metricsPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();

  before(async function () {
    this.timeout(90000);
    pki = await testPki();
    srv = await startTestServer(pki.dir, {}, { COTSTREAM_METRICS_TOKEN: TOKEN });
    // JSON is YAML: the config needs no YAML library. Two jobs on the same target: one with the
    // token (as in ops/prometheus/prometheus.yml), one without it, which the server must refuse.
    const target = `127.0.0.1:${srv.metricsPort}`;
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: [RULES],
      scrape_configs: [
        { job_name: 'cotstream', authorization: { type: 'Bearer', credentials_file: 'token' }, static_configs: [{ targets: [target] }] },
        { job_name: 'no-token', static_configs: [{ targets: [target] }] },
      ],
    };
    prom = await startPrometheus(JSON.stringify(config, null, 2), { token: TOKEN });
  });
  afterEach(() => { while (clients.length) clients.pop()!.close(); });
  after(async () => {
    await prom?.stop();
    await srv?.stop();
  });

  it('reads cot_connections and cot_events_delivered_total back through the query API', async () => {
    const a = await CotClient.connect(srv.port, await pki.client('alpha'));
    const b = await CotClient.connect(srv.port, await pki.client('bravo'));
    clients.push(a, b);
    a.send(sa('prom-alpha', 'PROM-A'));
    for (let i = 0; i < 20; i++) a.send(chat('prom-alpha', `hello ${i}`));
    await b.waitFor((f) => f.filter((x) => x.includes('hello ')).length === 20);
    await sleep(50);
    const text = await scrape();
    const delivered = metricValue(text, 'cot_events_delivered_total');
    assert.ok(delivered >= 21, `the server counted ${delivered} deliveries`);
    assert.equal(metricValue(text, 'cot_connections'), 2);

    await prom.waitFor('cot_connections{job="cotstream"}', (r) => scalar(r) === 2);
    const got = await prom.waitFor('cot_events_delivered_total{job="cotstream"}', (r) => scalar(r) === delivered);
    assert.equal(got[0].metric.instance, `127.0.0.1:${srv.metricsPort}`);
    assert.equal(scalar(await prom.query('up{job="cotstream"}')), 1);
    await prom.waitFor('sum(cot_events_received_total{job="cotstream"})', (r) => scalar(r) >= 21);
    // the delivery latency histogram has observations and sensible quantiles
    const p99 = await prom.waitFor('histogram_quantile(0.99, sum by (le) (cot_delivery_latency_seconds_bucket{job="cotstream"}))', (r) => r.length === 1 && Number.isFinite(scalar(r)));
    assert.ok(scalar(p99) > 0 && scalar(p99) <= 5, `p99 ${scalar(p99)}`);

    // clients leave: Prometheus sees the gauge fall back to 0
    a.close();
    b.close();
    await prom.waitFor('cot_connections{job="cotstream"}', (r) => scalar(r) === 0);
  });

  it('a scrape without the token is refused (401) and shows as a down target', async () => {
    await prom.waitFor('up{job="no-token"}', (r) => r.length === 1 && scalar(r) === 0);
    const targets = await prom.api<{ activeTargets: Array<{ labels: { job: string }; lastError: string; health: string }> }>('/api/v1/targets');
    const t = targets.activeTargets.find((x) => x.labels.job === 'no-token')!;
    assert.equal(t.health, 'down');
    assert.match(t.lastError, /401/);
  });

  it('loads every alert rule, and the revoked-certificate alert fires on a live revoked client', async () => {
    const rules = await prom.api<{ groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> }>('/api/v1/rules');
    const all = rules.groups.flatMap((g) => g.rules);
    assert.ok(all.length >= 9, `only ${all.length} rules loaded`);
    for (const r of all) assert.equal(r.health, 'ok', `${r.name}: ${r.lastError}`);
    for (const name of ['CotHandshakeFailuresSurging', 'CotRevokedCertificateRetrying', 'CotSlowConsumerDrops', 'CotRateLimiting', 'CotBusDown', 'CotCertificateExpiringSoon', 'CotNoClients']) {
      assert.ok(all.some((r) => r.name === name), `rule ${name} missing`);
    }

    await prom.waitFor('cot_handshakes_total{job="cotstream",result="revoked"}', (r) => scalar(r) === 0);
    const mallory = await pki.client('mallory');
    const serial = canonicalSerial(new X509Certificate(fs.readFileSync(mallory.cert)).serialNumber);
    const previous = srv.server.isRevoked;
    srv.server.isRevoked = (id) => (id.serial === serial ? 'keyCompromise' : previous(id));
    try {
      const m = await CotClient.connect(srv.port, mallory).catch(() => null);
      if (m) { clients.push(m); await m.waitClosed(); }
      const alerts = await prom.waitFor('ALERTS{alertname="CotRevokedCertificateRetrying",alertstate="firing"}', (r) => r.length === 1);
      assert.equal(alerts[0].metric.severity, 'warning');
      assert.equal(alerts[0].metric.instance, `127.0.0.1:${srv.metricsPort}`);
    } finally {
      srv.server.isRevoked = previous;
    }
  });

  it('promtool check metrics passes on the live /metrics output, which has every DESIGN §3 metric', async () => {
    const text = await scrape();
    const r = promtool(['check', 'metrics'], text);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out.trim(), '', `promtool lint findings:\n${r.out}`);
    const types: Record<string, string> = {};
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types[m[1]] = m[2];
    const expected: Record<string, string> = {
      cot_connections: 'gauge', cot_handshakes_total: 'counter', cot_events_received_total: 'counter',
      cot_events_delivered_total: 'counter', cot_events_dropped_total: 'counter', cot_bytes_received_total: 'counter',
      cot_bytes_sent_total: 'counter', cot_delivery_latency_seconds: 'histogram', cot_bus_up: 'gauge',
      cot_bus_messages_total: 'counter', cot_revoked_serials: 'gauge', cot_certificate_expiry_timestamp_seconds: 'gauge',
      process_cpu_seconds_total: 'counter', process_resident_memory_bytes: 'gauge', nodejs_eventloop_lag_p99_seconds: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) assert.equal(types[name], type, `${name} should be a ${type}`);
    for (const result of ['ok', 'revoked', 'no_cert', 'limit', 'bad_cert', 'timeout', 'error']) {
      assert.match(text, new RegExp(`^cot_handshakes_total\\{result="${result}"\\} \\d+$`, 'm'));
    }
    for (const reason of ['slow_consumer', 'rate_limit', 'oversize', 'malformed']) {
      assert.match(text, new RegExp(`^cot_events_dropped_total\\{reason="${reason}"\\} \\d+$`, 'm'));
    }
    for (const dir of ['in', 'out']) assert.match(text, new RegExp(`^cot_bus_messages_total\\{direction="${dir}"\\} \\d+$`, 'm'));
    // both certificates of the PKI, as unix seconds in the future
    for (const cert of ['ca', 'server']) {
      const v = metricValue(text, 'cot_certificate_expiry_timestamp_seconds', { cert });
      assert.ok(v > Date.now() / 1000 + 86400, `${cert} expiry ${v}`);
    }
    const ca = new X509Certificate(fs.readFileSync(path.join(pki.dir, 'ca.pem')));
    assert.equal(metricValue(text, 'cot_certificate_expiry_timestamp_seconds', { cert: 'ca' }), Math.floor(Date.parse(ca.validTo) / 1000));
  });

  it('no label carries a callsign, uid, serial, CN or IP address', async () => {
    const a = await CotClient.connect(srv.port, await pki.client('alpha'));
    const b = await CotClient.connect(srv.port, await pki.client('bravo'));
    clients.push(a, b);
    a.send(sa('label-uid-alpha', 'LABEL-CALLSIGN'));
    await b.waitFor((f) => f.some((x) => x.includes('label-uid-alpha')));
    const text = await scrape();
    const serial = canonicalSerial(new X509Certificate(fs.readFileSync((await pki.client('alpha')).cert)).serialNumber);
    const labelValues = [...text.matchAll(/^[a-zA-Z_:][\w:]*\{([^}]*)\}/gm)].flatMap((m) => [...m[1].matchAll(/="((?:[^"\\]|\\.)*)"/g)].map((v) => v[1]));
    assert.ok(labelValues.length > 20);
    for (const v of labelValues) {
      for (const secret of ['label-uid-alpha', 'LABEL-CALLSIGN', 'alpha', 'bravo', serial, '127.0.0.1']) {
        assert.ok(!v.toLowerCase().includes(secret.toLowerCase()), `label value "${v}" contains "${secret}"`);
      }
    }
    const labelNames = new Set([...text.matchAll(/^cot_\w+\{([^}]*)\}/gm)].flatMap((m) => [...m[1].matchAll(/(\w+)="/g)].map((k) => k[1])));
    assert.deepEqual([...labelNames].sort(), ['cert', 'direction', 'event', 'le', 'reason', 'result']);
  });

  it('every query of the Grafana dashboard is valid PromQL over metrics the server exposes', async () => {
    const dash = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ title: string; type: string; targets?: Array<{ expr: string }> }>; templating: { list: Array<{ name: string; definition?: string }> } };
    const text = await scrape();
    const exposed = new Set([...text.matchAll(/^([a-zA-Z_:][\w:]*)[{ ]/gm)].map((m) => m[1]));
    const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
    assert.ok(exprs.length >= 15);
    for (const title of ['Connected clients by node', 'Events in / out per second', 'Dropped events by reason', 'Delivery latency quantiles (receive to write)', 'TLS handshakes by result']) {
      assert.ok(dash.panels.some((p) => p.title === title), `panel "${title}" missing`);
    }
    const instance = dash.templating.list.find((v) => v.name === 'instance')!;
    exprs.push({ title: 'variable instance', expr: instance.definition!.replace(/^label_values\((\w+), \w+\)$/, '$1') });
    for (const { title, expr } of exprs) {
      const q = expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.+');
      const names = [...q.matchAll(/\b((?:cot|process|nodejs)_\w+)/g)].map((m) => m[1]);
      for (const n of names) assert.ok(exposed.has(n), `${title}: ${n} is not in /metrics`);
      await prom.query(q); // throws on a PromQL error
    }
    // a few panels must show data after the traffic above
    // (a series: its value depends on which clients of the tests above are still connected; no series is NaN)
    assert.ok(Number.isFinite(scalar(await prom.query('sum(cot_connections{job="cotstream",instance=~".+"})'))), 'the connections panel has a series');
    await prom.waitFor('sum by (result) (rate(cot_handshakes_total{instance=~".+"}[1m]))', (r) => r.some((x) => x.metric.result === 'ok' && Number(x.value[1]) > 0));
  });
});
