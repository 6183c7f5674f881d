//! What the kernel says about a listening port's connections (`/proc/net/tcp`): how many a
//! server has accepted and how many wait in its listen backlog. Tests of connection bounds read
//! it instead of trusting the server's own account.

use crate::Error;

/// Sockets of a listening port on 127.0.0.1, as the kernel lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSockets {
    /// Established connections the server has accepted (they have an inode: a descriptor).
    pub accepted: usize,
    /// Connections the kernel completed that wait in the listen backlog.
    pub backlog: usize,
}

impl PortSockets {
    /// Reads `/proc/net/tcp` for the server side of `port`. The clients' sides, in the test's
    /// process, have other local ports.
    pub fn of(port: u16) -> Result<Self, Error> {
        let table = std::fs::read_to_string("/proc/net/tcp")
            .map_err(|e| Error::io("reading /proc/net/tcp", e))?;
        Ok(Self::parse(&table, port))
    }

    fn parse(table: &str, port: u16) -> Self {
        let mut sockets = PortSockets {
            accepted: 0,
            backlog: 0,
        };
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, local, _, state, queues, _, _, _, _, inode, ..] = fields[..] else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port != Some(port) {
                continue;
            }
            match state {
                // LISTEN: rx_queue is the number of connections waiting to be accepted.
                "0A" => {
                    let rx = queues.split(':').nth(1).unwrap_or("0");
                    sockets.backlog += usize::from_str_radix(rx, 16).unwrap_or(0);
                }
                // ESTABLISHED, owned by a process once accepted.
                "01" if inode != "0" => sockets.accepted += 1,
                _ => {}
            }
        }
        sockets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_sockets_backlog_and_the_accepted_connections_of_one_port_are_counted() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 111
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 222
   2: 0100007F:1F90 0100007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 0
   3: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 333";
        assert_eq!(
            PortSockets::parse(table, 8080),
            PortSockets {
                accepted: 1,
                backlog: 3
            }
        );
        assert_eq!(
            PortSockets::parse(table, 9),
            PortSockets {
                accepted: 0,
                backlog: 0
            }
        );
    }
}
