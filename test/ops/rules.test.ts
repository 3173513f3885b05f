// Issue 8: the alert rules, their unit tests and the sample scrape config pass promtool, the tool
// operators will load them with.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/server.ts';
import { promtool } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';

const DIR = path.join(ROOT, 'ops', 'prometheus');

describe('ops: Prometheus alert rules', function () {
  this.timeout(30000);

  it('promtool check rules accepts alerts.yml', () => {
    const r = promtool(['check', 'rules', path.join(DIR, 'alerts.yml')]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS: \d+ rules found/);
  });

  it('promtool test rules passes alerts.test.yml, which tests every alert', () => {
    const r = promtool(['test', 'rules', path.join(DIR, 'alerts.test.yml')]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS/);
    const rules = [...fs.readFileSync(path.join(DIR, 'alerts.yml'), 'utf8').matchAll(/^\s+- alert: (\w+)$/gm)].map((m) => m[1]);
    const tests = fs.readFileSync(path.join(DIR, 'alerts.test.yml'), 'utf8');
    for (const name of rules) {
      assert.match(tests, new RegExp(`alertname: ${name}\\n\\s+exp_alerts:\\n\\s+- exp_labels`), `no test where ${name} fires`);
    }
  });

  it('promtool test rules fails when a rule is broken (the unit tests can fail)', () => {
    const tmp = tempDir('rules');
    try {
      // the bus alert with its condition inverted
      const broken = fs.readFileSync(path.join(DIR, 'alerts.yml'), 'utf8').replace('expr: cot_bus_up == 0', 'expr: cot_bus_up == 1');
      fs.writeFileSync(path.join(tmp, 'alerts.yml'), broken);
      fs.copyFileSync(path.join(DIR, 'alerts.test.yml'), path.join(tmp, 'alerts.test.yml'));
      const r = promtool(['test', 'rules', path.join(tmp, 'alerts.test.yml')]);
      assert.notEqual(r.code, 0);
      assert.match(r.out, /CotBusDown/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('promtool check config accepts the sample prometheus.yml (with the rules it loads)', () => {
    const r = promtool(['check', 'config', path.join(DIR, 'prometheus.yml')]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS: 1 rule files found/);
  });
});
