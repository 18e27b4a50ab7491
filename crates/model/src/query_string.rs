//! Decoding `application/x-www-form-urlencoded` query strings (`+` is a space, `%XX` escapes), shared by
//! the server's key lookup and query parameter parsing.

/// The `name=value` pairs of a query string, decoded; empty pairs are skipped.
pub fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
}

/// Percent-decodes `text`; with `plus_as_space`, `+` means a space (form encoding).
pub(crate) fn percent_decode(text: &str, plus_as_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 3;
                        continue;
                    }
                    None => decoded.push(b'%'),
                }
            }
            b'+' if plus_as_space => decoded.push(b' '),
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        assert_eq!(percent_decode("a%2Bb+c%3D", true), "a+b c=");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%zz", true), "%zz");
        assert_eq!(percent_decode("%41", true), "A");
        let pairs: Vec<_> = pairs("api_key=k1&&data=eyJ9&x").collect();
        assert_eq!(
            pairs,
            [
                ("api_key".into(), "k1".into()),
                ("data".into(), "eyJ9".into()),
                ("x".into(), String::new())
            ]
        );
    }
}
