//! Does a client certificate carry the required name?
//!
//! Meta's client certificate names itself in the subject's common name (CN), and a certificate
//! may also list the name as a DNS subject alternative name (SAN); either is accepted. The
//! certificate itself is parsed by rustls-webpki, the same parser that has just verified its
//! chain: it hands us the DNS SANs and the raw DER of the subject. The one thing it does not
//! expose is the CN inside that subject, so [`common_names`] walks the subject's DER here.
//!
//! Why a walk of our own rather than a full X.509 crate (x509-parser and its ASN.1 stack): the
//! subject is a fixed, shallow structure (a sequence of sets of (OID, string) pairs), the walk
//! is forty lines with every length checked against what is left, and it runs only on a
//! certificate webpki has already accepted as chaining to the configured CA. A full parser
//! would add about ten crates to the build to read one string.

use rustls_pki_types::CertificateDer;

/// DER tags met in a subject.
const SET: u8 = 0x31;
const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;

/// The content bytes of the OID 2.5.4.3, id-at-commonName.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Whether the certificate `der` names `subject` in its CN or in a DNS SAN (ASCII case is
/// ignored, as in DNS). A certificate webpki cannot parse names nothing.
pub(crate) fn names(der: &CertificateDer<'_>, subject: &str) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
        return false;
    };
    let same = |name: &str| name.eq_ignore_ascii_case(subject);
    cert.valid_dns_names().any(same) || common_names(cert.subject()).any(same)
}

/// Every common name in a subject given as webpki gives it (the content of the outer
/// `SEQUENCE`): the RDN sets, each holding `SEQUENCE { OID, value }` pairs. Values of a string
/// type other than UTF8String, PrintableString or IA5String are skipped (a DNS name is ASCII in
/// any of these three); malformed DER ends the walk.
pub(crate) fn common_names(subject: &[u8]) -> impl Iterator<Item = &str> {
    let mut rdns = subject;
    let mut pairs: &[u8] = &[];
    std::iter::from_fn(move || {
        loop {
            if pairs.is_empty() {
                pairs = take(&mut rdns, SET)?;
                continue;
            }
            let mut pair = take(&mut pairs, SEQUENCE)?;
            let oid = take(&mut pair, OID)?;
            let (tag, value) = take_any(&mut pair)?;
            if oid == COMMON_NAME
                && matches!(tag, UTF8_STRING | PRINTABLE_STRING | IA5_STRING)
                && let Ok(name) = std::str::from_utf8(value)
            {
                return Some(name);
            }
        }
    })
    .fuse()
}

/// Takes one element of tag `want` off the front of `input` and returns its content; `None`
/// (and `input` emptied, so that a walk ends) on another tag or a malformed length.
fn take<'a>(input: &mut &'a [u8], want: u8) -> Option<&'a [u8]> {
    match take_any(input) {
        Some((tag, content)) if tag == want => Some(content),
        _ => {
            *input = &[];
            None
        }
    }
}

/// Takes one element off the front of `input`: its tag and content.
fn take_any<'a>(input: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        // Long form: the low bits count the length bytes that follow. Four are far more than a
        // certificate needs and keep the sum below overflow on every platform.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    *input = after;
    Some((tag, content))
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, DnValue, KeyPair};

    use super::*;

    /// A self-signed certificate with `dn` as its subject and `sans` as DNS SANs.
    fn cert(dn: &[(DnType, DnValue)], sans: &[&str]) -> CertificateDer<'static> {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in dn {
            params.distinguished_name.push(ty.clone(), value.clone());
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn subject_of(der: &CertificateDer<'_>) -> Vec<u8> {
        webpki::EndEntityCert::try_from(der)
            .unwrap()
            .subject()
            .to_vec()
    }

    const META: &str = "client.webhooks.fbclientcerts.com";

    /// The CN is found among other attributes, in UTF8String and PrintableString form.
    #[test]
    fn finds_the_common_name() {
        let printable = DnValue::PrintableString(META.try_into().unwrap());
        for value in [DnValue::Utf8String(META.into()), printable] {
            let der = cert(
                &[
                    (DnType::CountryName, "US".into()),
                    (DnType::OrganizationName, "Meta Platforms, Inc.".into()),
                    (DnType::CommonName, value),
                ],
                &[],
            );
            let subject = subject_of(&der);
            assert_eq!(common_names(&subject).collect::<Vec<_>>(), [META]);
            assert!(names(&der, META));
            assert!(names(&der, &META.to_ascii_uppercase()));
            assert!(!names(&der, "webhooks.fbclientcerts.com"));
        }
    }

    /// A DNS SAN names the subject even when the CN says something else or is absent.
    #[test]
    fn a_dns_san_names_it_too() {
        let der = cert(&[(DnType::CommonName, "someone.else".into())], &[META]);
        assert!(names(&der, META));
        let der = cert(&[(DnType::OrganizationName, "Meta".into())], &[META]);
        assert!(names(&der, META));
        assert!(!names(&der, "Meta"), "an O is not a name");
    }

    /// A certificate with neither a matching CN nor a matching SAN names nothing.
    #[test]
    fn another_name_is_refused() {
        let der = cert(
            &[(DnType::CommonName, "client.example.com".into())],
            &["client.example.com"],
        );
        assert!(!names(&der, META));
        assert!(!names(
            &CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]),
            META
        ));
    }

    /// A multi-valued RDN (two pairs in one set) is walked pair by pair; a BMPString CN is
    /// skipped rather than misread.
    #[test]
    fn multi_valued_rdn_and_other_string_types() {
        let pair = |oid: &[u8], tag: u8, value: &[u8]| {
            let mut inner = vec![OID, oid.len() as u8];
            inner.extend_from_slice(oid);
            inner.extend_from_slice(&[tag, value.len() as u8]);
            inner.extend_from_slice(value);
            let mut out = vec![SEQUENCE, inner.len() as u8];
            out.extend(inner);
            out
        };
        let organization = [0x55, 0x04, 0x0a];
        let mut set = pair(&organization, UTF8_STRING, b"Meta");
        set.extend(pair(COMMON_NAME, 0x1e, &[0, b'x']));
        set.extend(pair(COMMON_NAME, IA5_STRING, b"a.example"));
        let mut subject = vec![SET, set.len() as u8];
        subject.extend(set);
        assert_eq!(common_names(&subject).collect::<Vec<_>>(), ["a.example"]);
    }

    /// Long-form lengths are read; every truncation of a real subject ends the walk without a
    /// panic, and a length past the end yields nothing.
    #[test]
    fn malformed_der_ends_the_walk() {
        let long = "x".repeat(200);
        let der = cert(&[(DnType::CommonName, long.as_str().into())], &[]);
        let subject = subject_of(&der);
        assert_eq!(common_names(&subject).collect::<Vec<_>>(), [long.as_str()]);
        for cut in 0..subject.len() {
            assert_eq!(common_names(&subject[..cut]).count(), 0, "cut at {cut}");
        }
        assert_eq!(common_names(&[SET, 0x85, 1, 1, 1, 1, 1]).count(), 0);
        assert_eq!(common_names(&[SET, 0x82, 0xff]).count(), 0);
        assert_eq!(common_names(&[SEQUENCE, 0]).count(), 0);
    }
}
