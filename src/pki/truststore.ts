// A certificate-only PKCS#12 ("truststore") that every TAK client stack reads as a trusted CA:
//  - friendlyName: Android's BouncyCastle keystore lists a certificate bag as a trusted entry only
//    when it has an alias;
//  - Oracle's trusted-key-usage attribute: Java's own PKCS12 keystore (keytool, Java TAK tools)
//    ignores certificate bags without it ("0 entries"), as `openssl pkcs12 -jdktrust` knows.
// forge's toPkcs12Asn1 cannot add that attribute, so the few structures are built here with
// forge's ASN.1 and PKCS#12 key derivation. No private key, ever: only the CA certificate.
import forge from 'node-forge';

const { asn1 } = forge;
const C = asn1.Class.UNIVERSAL;
const T = asn1.Type;

const OID = {
  data: '1.2.840.113549.1.7.1',
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  oracleTrustedKeyUsage: '2.16.840.1.113894.746875.1.1',
  anyExtendedKeyUsage: '2.5.29.37.0',
  sha1: '1.3.14.3.2.26',
} as const;

const MAC_ITERATIONS = 2048;

const seq = (v: forge.asn1.Asn1[]) => asn1.create(C, T.SEQUENCE, true, v);
const set = (v: forge.asn1.Asn1[]) => asn1.create(C, T.SET, true, v);
const oid = (o: string) => asn1.create(C, T.OID, false, asn1.oidToDer(o).getBytes());
const octets = (bytes: string) => asn1.create(C, T.OCTETSTRING, false, bytes);
const explicit0 = (v: forge.asn1.Asn1) => asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [v]);
const der = (v: forge.asn1.Asn1) => asn1.toDer(v).getBytes();

// forge encodes a BMPSTRING value (a JS string) as UTF-16BE itself
const bmpString = (s: string) => asn1.create(C, T.BMPSTRING, false, s);

export function truststoreP12(caCert: forge.pki.Certificate, password: string, friendlyName: string): Buffer {
  const certBag = seq([
    oid(OID.certBag),
    explicit0(seq([oid(OID.x509Certificate), explicit0(octets(der(forge.pki.certificateToAsn1(caCert))))])),
    set([
      seq([oid(OID.friendlyName), set([bmpString(friendlyName)])]),
      seq([oid(OID.oracleTrustedKeyUsage), set([oid(OID.anyExtendedKeyUsage)])]),
    ]),
  ]);
  const safeContents = seq([certBag]);
  const authenticatedSafe = der(seq([seq([oid(OID.data), explicit0(octets(der(safeContents)))])]));

  // MacData: HMAC-SHA1 over the AuthenticatedSafe with the PKCS#12 key derivation (ID 3)
  const salt = forge.random.getBytesSync(8);
  const key = forge.pkcs12.generateKey(password, forge.util.createBuffer(salt), 3, MAC_ITERATIONS, 20);
  const hmac = forge.hmac.create();
  hmac.start('sha1', key.getBytes());
  hmac.update(authenticatedSafe);
  const macData = seq([
    seq([seq([oid(OID.sha1), asn1.create(C, T.NULL, false, '')]), octets(hmac.digest().getBytes())]),
    octets(salt),
    asn1.create(C, T.INTEGER, false, asn1.integerToDer(MAC_ITERATIONS).getBytes()),
  ]);
  const pfx = seq([
    asn1.create(C, T.INTEGER, false, asn1.integerToDer(3).getBytes()),
    seq([oid(OID.data), explicit0(octets(authenticatedSafe))]),
    macData,
  ]);
  return Buffer.from(der(pfx), 'binary');
}
