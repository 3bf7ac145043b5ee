//! Long-poll answers, as bytes: `{"messages":[...],"last_seq":N,"epoch":"E",
//! "recovered":B}` for one channel, with a `channels` map for several. Messages
//! are the push JSON, copied in without re-serialising.

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

/// A complete `200` answer carrying `body`.
pub fn response(body: &[u8], allow_origin: Option<&str>, keep_alive: bool) -> Vec<u8> {
    let cors = allow_origin
        .map(|o| format!("Access-Control-Allow-Origin: {o}\r\n"))
        .unwrap_or_default();
    let connection = if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        "Connection: close\r\n"
    };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{cors}{connection}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
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
        let answer = String::from_utf8(response(b"{}", Some("*"), true)).unwrap();
        assert!(answer.contains("Content-Length: 2\r\n"));
        assert!(answer.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(answer.ends_with("\r\n\r\n{}"));
    }
}
