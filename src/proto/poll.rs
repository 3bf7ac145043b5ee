//! Long-poll answers, as bytes: `{"messages":[...],"last_seq":N,"epoch":"E",
//! "recovered":B}` for one channel, with a `channels` map for several. Messages
//! are the push JSON, copied in without re-serialising.

use super::gzip::Coding;

/// Where one channel stands after the messages of an answer.
#[derive(Debug, Clone, Copy)]
pub struct Standing<'a> {
    pub name: &'a str,
    pub last_seq: u64,
    pub epoch: &'a str,
    pub recovered: bool,
}

/// The JSON body. Channel names and epochs never need escaping (proto::command).
pub fn body<'m>(
    messages: impl IntoIterator<Item = &'m [u8]>,
    channels: &[Standing<'_>],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"messages\":[");
    for (i, message) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(message);
    }
    out.push(b']');
    if let [one] = channels {
        out.extend_from_slice(standing(one).as_bytes());
    } else {
        out.extend_from_slice(b",\"channels\":{");
        for (i, channel) in channels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let fields = standing(channel);
            out.extend_from_slice(format!("\"{}\":{{{}}}", channel.name, &fields[1..]).as_bytes());
        }
        out.push(b'}');
    }
    out.push(b'}');
    out
}

fn standing(channel: &Standing<'_>) -> String {
    format!(
        ",\"last_seq\":{},\"epoch\":\"{}\",\"recovered\":{}",
        channel.last_seq, channel.epoch, channel.recovered
    )
}

/// A complete `200` answer carrying `body`, which is gzip when `coding` says so.
pub fn response(
    body: &[u8],
    allow_origin: Option<&str>,
    keep_alive: bool,
    coding: Coding,
) -> Vec<u8> {
    let cors = super::http::cors_header(allow_origin);
    let coding = coding.header_lines();
    let extra = format!("Cache-Control: no-store\r\n{coding}{cors}");
    super::http::ok_response("application/json", body, keep_alive, &extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    #[test]
    fn one_channel_answers_flat() {
        let a = Standing {
            name: "a",
            last_seq: 2,
            epoch: "k3",
            recovered: true,
        };
        let push = br#"{"channel":"a","seq":2,"data":[1]}"#;
        assert_eq!(
            json(&body([&push[..]], &[a])),
            serde_json::json!({"messages":[{"channel":"a","seq":2,"data":[1]}],
                "last_seq":2,"epoch":"k3","recovered":true})
        );
    }

    #[test]
    fn several_channels_answer_with_a_map() {
        let a = Standing {
            name: "a",
            last_seq: 2,
            epoch: "k3",
            recovered: true,
        };
        let b = Standing {
            name: "b:1",
            last_seq: 0,
            epoch: "q",
            recovered: false,
        };
        assert_eq!(
            json(&body([], &[a, b])),
            serde_json::json!({"messages":[],"channels":{
                "a":{"last_seq":2,"epoch":"k3","recovered":true},
                "b:1":{"last_seq":0,"epoch":"q","recovered":false}}})
        );
        let answer = String::from_utf8(response(b"{}", Some("*"), true, Coding::Fixed)).unwrap();
        assert!(answer.contains("Content-Length: 2\r\n"));
        assert!(!answer.contains("Vary"));
        assert!(answer.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(answer.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn a_gzip_answer_says_so_and_counts_the_compressed_bytes() {
        let member = [
            0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let answer = response(&member, None, false, Coding::Gzip);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains("Content-Length: 20\r\n"));
        assert!(text.contains("Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"));
        assert!(answer.ends_with(&member));
        let plain = String::from_utf8(response(b"{}", None, true, Coding::Identity)).unwrap();
        assert!(plain.contains("Vary: Accept-Encoding\r\n"));
        assert!(!plain.contains("Content-Encoding"));
    }
}
