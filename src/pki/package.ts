// ATAK / WinTAK data package ("mission package" v2): one zip that configures the server connection
// and imports both certificates. Zipped with fflate: no dependencies, synchronous, and it writes
// the plain deflate/stored entries java.util.zip (ATAK) and .NET (WinTAK) read. iTAK gets the same
// files in a zip of its own: it looks for them at the top of the zip, not in a folder (TAK Server's
// layout, certs/, is what ATAK and WinTAK are known to import).
import { randomUUID } from 'node:crypto';
import { zipSync, strToU8 } from 'fflate';

export interface DataPackageInput {
  name: string;
  host: string;
  port: number;
  clientP12: Uint8Array;
  clientPassword: string;
  truststoreP12: Uint8Array;
  truststorePassword: string;
  description?: string;
  /** where the pref and the .p12 files go in the zip: certs/ (ATAK, WinTAK) or the top (iTAK) */
  layout?: string;
  /** the zip's file name, as the manifest names the package (default NAME.zip) */
  zipName?: string;
}

/** The folder of the pref and .p12 files for ATAK and WinTAK; iTAK's package has none. */
export const ATAK_LAYOUT = 'certs/';
export const ITAK_LAYOUT = '';

/** Zip entry names, exported for tests and docs. */
export function packageEntries(name: string, layout = ATAK_LAYOUT): { manifest: string; pref: string; client: string; truststore: string } {
  return {
    manifest: 'MANIFEST/manifest.xml',
    pref: `${layout}cotstream.pref`,
    client: `${layout}${name}.p12`,
    truststore: `${layout}truststore-${name}.p12`,
  };
}

export function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

export function buildDataPackage(i: DataPackageInput): Uint8Array {
  const layout = i.layout ?? ATAK_LAYOUT;
  const e = packageEntries(i.name, layout);
  const x = xmlEscape;
  const manifest = `<MissionPackageManifest version="2">
  <Configuration>
    <Parameter name="uid" value="${randomUUID()}"/>
    <Parameter name="name" value="${x(i.zipName ?? `${i.name}.zip`)}"/>
    <Parameter name="onReceiveDelete" value="true"/>
  </Configuration>
  <Contents>
    <Content ignore="false" zipEntry="${x(e.pref)}"/>
    <Content ignore="false" zipEntry="${x(e.truststore)}"/>
    <Content ignore="false" zipEntry="${x(e.client)}"/>
  </Contents>
</MissionPackageManifest>
`;
  const str = (k: string, v: string) => `    <entry key="${k}" class="class java.lang.String">${x(v)}</entry>`;
  // ATAK copies imported .p12 files into its cert/ directory: the locations are relative to it
  const pref = `<?xml version='1.0' encoding='ASCII' standalone='yes'?>
<preferences>
  <preference version="1" name="cot_streams">
    <entry key="count" class="class java.lang.Integer">1</entry>
${str('description0', i.description ?? `cotstream ${i.host}`)}
    <entry key="enabled0" class="class java.lang.Boolean">true</entry>
${str('connectString0', `${i.host}:${i.port}:ssl`)}
  </preference>
  <preference version="1" name="com.atakmap.app_preferences">
    <entry key="displayServerConnectionWidget" class="class java.lang.Boolean">true</entry>
${str('caLocation', `cert/${e.truststore.slice(layout.length)}`)}
${str('caPassword', i.truststorePassword)}
${str('certificateLocation', `cert/${e.client.slice(layout.length)}`)}
${str('clientPassword', i.clientPassword)}
  </preference>
</preferences>
`;
  const mtime = new Date();
  return zipSync(
    {
      [e.manifest]: [strToU8(manifest), { level: 6, mtime }],
      [e.pref]: [strToU8(pref), { level: 6, mtime }],
      // PKCS#12 is encrypted, so incompressible: store it
      [e.truststore]: [i.truststoreP12, { level: 0, mtime }],
      [e.client]: [i.clientP12, { level: 0, mtime }],
    },
  );
}
