//! A one-question DNS client, to tell when a node's cluster DNS answers.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType},
};

/// The A records `server` answers for `name` (empty for NXDOMAIN or no data); an error if
/// nothing answered within `timeout`.
pub(crate) fn a_records(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> io::Result<Vec<Ipv4Addr>> {
    let invalid =
        |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(name).map_err(|e| invalid(&e))?,
        RecordType::A,
    ));
    let socket = UdpSocket::bind(("0.0.0.0", 0))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send_to(&query.to_vec().map_err(|e| invalid(&e))?, server)?;
    let mut buffer = [0_u8; 4096];
    loop {
        let (length, from) = socket.recv_from(&mut buffer)?;
        let Ok(answer) = Message::from_vec(&buffer[..length]) else {
            continue;
        };
        if from != server || answer.metadata.id != query.metadata.id {
            continue;
        }
        return Ok(answer
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect());
    }
}
