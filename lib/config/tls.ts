/**
 * The Aiven-style certificate folder (`ca.pem`, `service.cert`, `service.key`): loading and checks.
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { AppError } from "../errors.ts";

/** File names of an Aiven cert folder. */
export const CERT_FILES = { ca: "ca.pem", cert: "service.cert", key: "service.key" } as const;

/** PEM texts read from a cert folder. */
export interface TlsMaterial {
  ca: string;
  cert?: string;
  key?: string;
}

/** Options of {@linkcode checkCertFolder}. */
export interface CertCheckOptions {
  /** Also require and check the client certificate and key (SSL client auth). @default {true} */
  clientCert?: boolean;
  /** Clock used for expiry checks. @default {new Date()} */
  now?: Date;
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Checks a cert folder and returns every problem found (empty when all is well): files present,
 * PEM parseable, key matches certificate, certificate signed by the CA, not expired.
 */
export function checkCertFolder(dir: string, options: CertCheckOptions = {}): string[] {
  const problems: string[] = [];
  const wantClient = options.clientCert ?? true;
  const now = options.now ?? new Date();
  try {
    if (!Deno.statSync(dir).isDirectory) return [`cert path ${dir} is not a folder`];
  } catch {
    return [
      `cert folder ${dir} does not exist; download ca.pem, service.cert and service.key there`,
    ];
  }
  const names = wantClient ? [CERT_FILES.ca, CERT_FILES.cert, CERT_FILES.key] : [CERT_FILES.ca];
  const texts = new Map<string, string>();
  for (const name of names) {
    const text = readText(join(dir, name));
    if (text === undefined) {
      problems.push(
        `cert folder ${dir} has no readable ${name}; download it from the service's overview page`,
      );
    } else texts.set(name, text);
  }
  const parseCert = (name: string): X509Certificate | undefined => {
    const text = texts.get(name);
    if (text === undefined) return undefined;
    try {
      return new X509Certificate(text);
    } catch {
      problems.push(`${join(dir, name)} is not a PEM certificate`);
      return undefined;
    }
  };
  const ca = parseCert(CERT_FILES.ca);
  const cert = wantClient ? parseCert(CERT_FILES.cert) : undefined;
  let key;
  const keyText = texts.get(CERT_FILES.key);
  if (keyText !== undefined) {
    try {
      key = createPrivateKey(keyText);
    } catch {
      problems.push(`${join(dir, CERT_FILES.key)} is not a PEM private key`);
    }
  }
  for (const [name, x509] of [[CERT_FILES.ca, ca], [CERT_FILES.cert, cert]] as const) {
    if (!x509) continue;
    if (new Date(x509.validTo) < now) {
      problems.push(
        `${join(dir, name)} expired on ${
          new Date(x509.validTo).toISOString()
        }; download a fresh one`,
      );
    } else if (new Date(x509.validFrom) > now) {
      problems.push(
        `${join(dir, name)} is not valid before ${new Date(x509.validFrom).toISOString()}`,
      );
    }
  }
  if (cert && key && !cert.checkPrivateKey(key)) {
    problems.push(
      `${
        join(dir, CERT_FILES.key)
      } does not match ${CERT_FILES.cert}; download both from the same service`,
    );
  }
  if (cert && ca && !cert.verify(ca.publicKey)) {
    problems.push(
      `${CERT_FILES.cert} in ${dir} was not signed by ${CERT_FILES.ca}; use the CA of the same project`,
    );
  }
  return problems;
}

/** Days until the client certificate (or the CA when there is none) expires. */
export function daysUntilExpiry(dir: string, now = new Date()): number | undefined {
  const text = readText(join(dir, CERT_FILES.cert)) ?? readText(join(dir, CERT_FILES.ca));
  if (!text) return undefined;
  try {
    return (new Date(new X509Certificate(text).validTo).getTime() - now.getTime()) / 86_400_000;
  } catch {
    return undefined;
  }
}

/** Reads a cert folder after checking it; throws one error listing every problem. */
export function loadCertFolder(dir: string, options: CertCheckOptions = {}): TlsMaterial {
  const problems = checkCertFolder(dir, options);
  if (problems.length > 0) {
    throw new AppError(
      problems[0]!.includes("has no") ? "MISSING_CERT" : "BAD_CERT",
      problems.join("; "),
    );
  }
  const wantClient = options.clientCert ?? true;
  return {
    ca: Deno.readTextFileSync(join(dir, CERT_FILES.ca)),
    cert: wantClient ? Deno.readTextFileSync(join(dir, CERT_FILES.cert)) : undefined,
    key: wantClient ? Deno.readTextFileSync(join(dir, CERT_FILES.key)) : undefined,
  };
}
