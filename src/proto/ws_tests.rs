use super::*;
use crate::proto::deflate::Deflater;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame as a browser would send it: masked.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    let mut body = payload.to_vec();
    unmask(&mut body, MASK);
    out.extend_from_slice(&body);
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Message(bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
}

/// Feeds `wire` in two pieces split at `split`, the way a connection accumulates
/// reads, and collects every event until the first violation.
fn run(wire: &[u8], split: usize, max: usize) -> (Vec<Owned>, Option<Violation>) {
    run_with(wire, split, max, None)
}

/// [`run`] for a connection that negotiated permessage-deflate.
fn run_deflate(wire: &[u8], split: usize, max: usize) -> (Vec<Owned>, Option<Violation>) {
    run_with(wire, split, max, Some(&mut Inflater::default()))
}

fn run_with(
    wire: &[u8],
    split: usize,
    max: usize,
    mut inflater: Option<&mut Inflater>,
) -> (Vec<Owned>, Option<Violation>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut fragments = None;
    let mut events = Vec::new();
    for piece in [&wire[..split], &wire[split..]] {
        pending.extend_from_slice(piece);
        loop {
            match decode_with(&mut pending, &mut fragments, max, inflater.as_deref_mut()) {
                Ok(Decoded::Incomplete) => break,
                Ok(Decoded::Frame { consumed, event }) => {
                    if let Some(event) = event {
                        events.push(match event {
                            Event::Message { text, payload } => {
                                Owned::Message(text, payload.into_owned())
                            }
                            Event::Ping(p) => Owned::Ping(p.to_vec()),
                            Event::Pong => Owned::Pong,
                            Event::Close(code) => Owned::Close(code),
                        });
                    }
                    pending.drain(..consumed);
                }
                Err(v) => return (events, Some(v)),
            }
        }
    }
    (events, None)
}

fn at_every_split(wire: &[u8], max: usize) -> (Vec<Owned>, Option<Violation>) {
    let whole = run(wire, wire.len(), max);
    for split in 0..wire.len() {
        assert_eq!(run(wire, split, max), whole, "split at byte {split}");
    }
    whole
}

#[test]
fn a_stream_of_frames_decodes_the_same_at_every_split() {
    let mut wire = client_frame(0x81, b"{\"op\":\"noop\"}");
    wire.extend(client_frame(0x01, "héllo ".as_bytes()));
    wire.extend(client_frame(0x89, b"ping!"));
    wire.extend(client_frame(0x00, "wörld".as_bytes()));
    wire.extend(client_frame(0x80, b"!"));
    wire.extend(client_frame(0x82, &[0u8; 300]));
    wire.extend(client_frame(0x8a, b""));
    wire.extend(client_frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']));
    let (events, violation) = at_every_split(&wire, 1 << 20);
    assert_eq!(violation, None);
    assert_eq!(
        events,
        vec![
            Owned::Message(true, b"{\"op\":\"noop\"}".to_vec()),
            Owned::Ping(b"ping!".to_vec()),
            Owned::Message(true, "héllo wörld!".as_bytes().to_vec()),
            Owned::Message(false, vec![0u8; 300]),
            Owned::Pong,
            Owned::Close(Some(1000)),
        ]
    );
}

#[test]
fn long_payload_lengths_decode() {
    for len in [125usize, 126, 65_535, 65_536, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let (events, violation) = run(&client_frame(0x81, &payload), 3, 1 << 20);
        assert_eq!(violation, None);
        assert_eq!(events, vec![Owned::Message(true, payload)], "length {len}");
    }
}

fn violation_of(wire: &[u8], max: usize) -> Violation {
    at_every_split(wire, max).1.expect("a violation")
}

#[test]
fn unmasked_frames_are_a_protocol_error() {
    assert_eq!(violation_of(&[0x81, 0x02, b'h', b'i'], 1024).code, 1002);
}

#[test]
fn protocol_violations_close_with_1002() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved bit", client_frame(0xc1, b"x")),
        ("reserved data opcode", client_frame(0x83, b"")),
        ("reserved control opcode", client_frame(0x8b, b"")),
        ("fragmented ping", client_frame(0x09, b"")),
        ("ping over 125 bytes", client_frame(0x89, &[1u8; 126])),
        ("continuation first", client_frame(0x80, b"x")),
        ("close of one byte", client_frame(0x88, &[0x03])),
        ("close code 999", client_frame(0x88, &999u16.to_be_bytes())),
        (
            "close code 1005",
            client_frame(0x88, &1005u16.to_be_bytes()),
        ),
        (
            "new text inside fragments",
            [client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat(),
        ),
    ];
    for (name, wire) in cases {
        assert_eq!(violation_of(&wire, 1024).code, 1002, "{name}");
    }
}

#[test]
fn invalid_utf8_closes_with_1007() {
    assert_eq!(
        violation_of(&client_frame(0x81, &[0xce, 0xba, 0xff]), 1024).code,
        1007
    );
    let mut reason = vec![0x03, 0xe8];
    reason.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(violation_of(&client_frame(0x88, &reason), 1024).code, 1007);
}

#[test]
fn invalid_utf8_in_a_first_fragment_fails_before_the_message_ends() {
    let (events, violation) = run(&client_frame(0x01, &[b'a', 0xff]), 0, 1024);
    assert!(events.is_empty());
    assert_eq!(violation.map(|v| v.code), Some(1007));
}

#[test]
fn a_split_utf8_sequence_across_fragments_is_valid() {
    let snowman = "☃".as_bytes();
    let wire = [
        client_frame(0x01, &snowman[..1]),
        client_frame(0x80, &snowman[1..]),
    ]
    .concat();
    let (events, violation) = at_every_split(&wire, 1024);
    assert_eq!(violation, None);
    assert_eq!(events, vec![Owned::Message(true, snowman.to_vec())]);
}

#[test]
fn oversize_messages_close_with_1009_even_across_fragments() {
    assert_eq!(
        violation_of(&client_frame(0x82, &[0u8; 1025]), 1024).code,
        1009
    );
    let wire = [
        client_frame(0x02, &[0u8; 600]),
        client_frame(0x80, &[0u8; 600]),
    ]
    .concat();
    assert_eq!(violation_of(&wire, 1024).code, 1009);
    // Exactly at the cap is fine.
    let (_, violation) = run(&client_frame(0x82, &[0u8; 1024]), 0, 1024);
    assert_eq!(violation, None);
}

#[test]
fn a_huge_declared_length_is_refused_before_any_payload_arrives() {
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&u64::MAX.to_be_bytes());
    head.extend_from_slice(&MASK);
    assert_eq!(run(&head, head.len(), 1024).1.map(|v| v.code), Some(1009));
}

#[test]
fn encoded_frames_parse_back_with_the_right_header() {
    for len in [0usize, 125, 126, 65_535, 65_536] {
        let payload = vec![7u8; len];
        let wire = frame(Kind::Text, &payload);
        let mut cursor = Cursor::new(&wire);
        let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert!(header.is_final && header.mask.is_none());
        assert_eq!(header.opcode, OpCode::Data(Data::Text));
        assert_eq!(length as usize, len);
        assert_eq!(&wire[cursor.position() as usize..], &payload[..]);
    }
    assert_eq!(
        close_frame(1001, "bye"),
        vec![0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']
    );
    assert_eq!(frame(Kind::Ping, b""), vec![0x89, 0]);
}

#[test]
fn unmask_is_an_involution_at_every_length_and_alignment() {
    let data: Vec<u8> = (0..40u8).collect();
    for start in 0..4 {
        for end in start..data.len() {
            let mut buf = data[start..end].to_vec();
            unmask(&mut buf, MASK);
            let expected: Vec<u8> = data[start..end]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(buf, expected);
        }
    }
}

// ------------------------------------------------------------ permessage-deflate

/// RFC 7692 section 7.2.3.1: "Hello" compressed, as one message.
const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

fn deflate_at_every_split(wire: &[u8], max: usize) -> (Vec<Owned>, Option<Violation>) {
    let whole = run_deflate(wire, wire.len(), max);
    for split in 0..wire.len() {
        assert_eq!(
            run_deflate(wire, split, max),
            whole,
            "split at byte {split}"
        );
    }
    whole
}

#[test]
fn rsv1_without_negotiation_is_a_protocol_error() {
    let (_, violation) = run(&client_frame(0xc1, &HELLO), 0, 1024);
    assert_eq!(violation.map(|v| v.code), Some(1002));
}

#[test]
fn compressed_messages_inflate_whole_or_fragmented_among_plain_ones() {
    let mut wire = client_frame(0xc1, &HELLO);
    wire.extend(client_frame(0x81, b"plain"));
    // RFC 7692 7.2.3.1 again, in two fragments: RSV1 on the first only.
    wire.extend(client_frame(0x41, &HELLO[..3]));
    wire.extend(client_frame(0x89, b"between"));
    wire.extend(client_frame(0x80, &HELLO[3..]));
    let (events, violation) = deflate_at_every_split(&wire, 1024);
    assert_eq!(violation, None);
    assert_eq!(
        events,
        vec![
            Owned::Message(true, b"Hello".to_vec()),
            Owned::Message(true, b"plain".to_vec()),
            Owned::Ping(b"between".to_vec()),
            Owned::Message(true, b"Hello".to_vec()),
        ]
    );
}

#[test]
fn rsv1_on_a_continuation_or_control_frame_is_a_protocol_error() {
    let cases = [
        [
            client_frame(0x41, &HELLO[..3]),
            client_frame(0xc0, &HELLO[3..]),
        ]
        .concat(),
        client_frame(0xc9, b""),
        client_frame(0xc8, &[0x03, 0xe8]),
        client_frame(0xa1, b"x"),
    ];
    for wire in cases {
        let (_, violation) = run_deflate(&wire, wire.len(), 1024);
        assert_eq!(violation.map(|v| v.code), Some(1002), "{wire:x?}");
    }
}

#[test]
fn a_zip_bomb_closes_with_1009_once_inflated_past_the_cap() {
    let mut bomb = Vec::new();
    Deflater::default().compress(&vec![b'a'; 1 << 20], &mut bomb);
    assert!(bomb.len() < 2048, "{} bytes", bomb.len());
    let (_, violation) = run_deflate(&client_frame(0xc1, &bomb), 0, 64 * 1024);
    assert_eq!(violation, Some(INFLATES_TOO_BIG));
    // Fragmented, the bomb is refused the same way.
    let wire = [
        client_frame(0x41, &bomb[..bomb.len() / 2]),
        client_frame(0x80, &bomb[bomb.len() / 2..]),
    ]
    .concat();
    assert_eq!(run_deflate(&wire, 0, 64 * 1024).1, Some(INFLATES_TOO_BIG));
    // Just at the cap is fine.
    let mut exact = Vec::new();
    Deflater::default().compress(&[b'a'; 1024], &mut exact);
    let (events, violation) = run_deflate(&client_frame(0xc2, &exact), 0, 1024);
    assert_eq!(violation, None);
    assert_eq!(events, vec![Owned::Message(false, vec![b'a'; 1024])]);
}

#[test]
fn corrupt_deflate_or_bad_utf8_inside_is_refused() {
    let (_, violation) = run_deflate(&client_frame(0xc1, &[0xff, 0xff, 0xff]), 0, 1024);
    assert_eq!(violation, Some(CORRUPT_DEFLATE));
    let mut bad_text = Vec::new();
    Deflater::default().compress(&[b'a', 0xff, 0xfe], &mut bad_text);
    let (_, violation) = run_deflate(&client_frame(0xc1, &bad_text), 0, 1024);
    assert_eq!(violation.map(|v| v.code), Some(1007));
}

#[test]
fn compressed_frames_carry_rsv1_and_round_trip() {
    let message = br#"{"channel":"c","seq":1,"data":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
    let mut packed = Vec::new();
    Deflater::default().compress(message, &mut packed);
    let mut wire = Vec::new();
    encode_compressed(Kind::Text, &packed, &mut wire);
    let mut cursor = Cursor::new(&wire);
    let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
    assert!(header.rsv1 && !header.rsv2 && !header.rsv3 && header.is_final);
    assert_eq!(length as usize, packed.len());
    let body = &wire[cursor.position() as usize..];
    assert_eq!(Inflater::default().inflate(body, 1024).unwrap(), message);
    assert!(
        !FrameHeader::parse(&mut Cursor::new(frame(Kind::Text, b"x")))
            .unwrap()
            .unwrap()
            .0
            .rsv1
    );
}

#[test]
fn a_compressed_message_is_held_to_the_cap_before_inflating_too() {
    // Stored blocks: the compressed payload is larger than its 1,000 bytes inflated.
    let incompressible: Vec<u8> = (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut stored = Vec::new();
    for chunk in incompressible.chunks(100) {
        stored.push(0x00);
        stored.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
        stored.extend_from_slice(&(!(chunk.len() as u16)).to_le_bytes());
        stored.extend_from_slice(chunk);
    }
    assert!(stored.len() > 1024);
    let (_, violation) = run_deflate(&client_frame(0xc2, &stored), 0, 1024);
    assert_eq!(violation, Some(TOO_BIG));
    let (events, violation) = run_deflate(&client_frame(0xc2, &stored), 0, 2048);
    assert_eq!(violation, None);
    assert_eq!(events, vec![Owned::Message(false, incompressible)]);
}
