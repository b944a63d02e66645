//! Redis Cluster key slots: CRC16 of the key (or of its `{hash tag}`) modulo 16384, and
//! the map from slot to master read from `CLUSTER SLOTS`.

use super::resp::Reply;

use super::connection::NodeAddr;

pub const SLOT_COUNT: usize = 16384;

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with, a byte at a time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// The slot of `key`. Like Redis, only the part between the first `{` and the next `}`
/// counts when that part is not empty.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOT_COUNT as u16
}

const UNCOVERED: u16 = u16::MAX;

/// Which master serves each slot.
#[derive(Debug, Clone)]
pub struct SlotMap {
    owners: Vec<u16>,
    masters: Vec<NodeAddr>,
}

impl SlotMap {
    pub fn owner(&self, slot: u16) -> Option<&NodeAddr> {
        match self.owners[usize::from(slot)] {
            UNCOVERED => None,
            index => Some(&self.masters[usize::from(index)]),
        }
    }

    pub fn masters(&self) -> &[NodeAddr] {
        &self.masters
    }

    /// Reads a `CLUSTER SLOTS` reply given by `answered_by`; `None` when it is not one.
    pub fn from_cluster_slots(reply: &Reply, answered_by: &NodeAddr) -> Option<Self> {
        let Reply::Array(ranges) = reply else {
            return None;
        };
        let mut owners = vec![UNCOVERED; SLOT_COUNT];
        let mut masters: Vec<NodeAddr> = Vec::new();
        for range in ranges {
            let Reply::Array(fields) = range else {
                return None;
            };
            let (start, end) = (fields.first()?.integer()?, fields.get(1)?.integer()?);
            let Reply::Array(master) = fields.get(2)? else {
                return None;
            };
            let host = String::from_utf8(master.first()?.text()?.to_vec()).ok()?;
            let port = u16::try_from(master.get(1)?.integer()?).ok()?;
            // An empty or '?' host means "the address you reached me at".
            let host = if host.is_empty() || host == "?" {
                answered_by.host.clone()
            } else {
                host
            };
            let addr = NodeAddr::new(host, port);
            let index = match masters.iter().position(|m| *m == addr) {
                Some(index) => index,
                None => {
                    masters.push(addr);
                    masters.len() - 1
                }
            };
            let (start, end) = (usize::try_from(start).ok()?, usize::try_from(end).ok()?);
            if start > end || end >= SLOT_COUNT {
                return None;
            }
            owners[start..=end].fill(u16::try_from(index).ok()?);
        }
        Some(Self { owners, masters })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_redis_cluster_specification() {
        // The specification's check value, and slots `redis-cli CLUSTER KEYSLOT` prints.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn slot_map_reads_cluster_slots() {
        let seed = NodeAddr::new("10.0.0.1", 7000);
        let range = |start: i64, end: i64, host: &str, port: i64| {
            Reply::Array(vec![
                Reply::Int(start),
                Reply::Int(end),
                Reply::Array(vec![
                    Reply::Bulk(bytes::Bytes::copy_from_slice(host.as_bytes())),
                    Reply::Int(port),
                    Reply::Bulk(bytes::Bytes::from_static(b"id")),
                ]),
            ])
        };
        let reply = Reply::Array(vec![
            range(0, 5460, "", 7000),
            range(5461, 10922, "10.0.0.2", 7001),
            range(10923, 16383, "10.0.0.3", 7002),
        ]);
        let map = SlotMap::from_cluster_slots(&reply, &seed).unwrap();
        assert_eq!(map.masters().len(), 3);
        assert_eq!(map.owner(0), Some(&seed));
        assert_eq!(map.owner(5461), Some(&NodeAddr::new("10.0.0.2", 7001)));
        assert_eq!(map.owner(16383), Some(&NodeAddr::new("10.0.0.3", 7002)));

        let partial = Reply::Array(vec![range(0, 100, "h", 1)]);
        assert_eq!(
            SlotMap::from_cluster_slots(&partial, &seed).unwrap().owner(101),
            None
        );
        assert!(SlotMap::from_cluster_slots(&Reply::Int(1), &seed).is_none());
        assert!(SlotMap::from_cluster_slots(&Reply::Array(vec![range(5, 1, "h", 1)]), &seed).is_none());
    }
}
