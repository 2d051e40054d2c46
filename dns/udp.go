package dns

// udpBatch is how many datagrams one worker reads (recvmmsg) and writes
// (sendmmsg) per system call at most.
const udpBatch = 32

// udpReadSize is the read buffer per datagram: miekg/dns's server reads
// up to 64 KiB too, so both paths see every query whole.
const udpReadSize = 65535
