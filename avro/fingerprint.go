package avro

// crc64Empty is the CRC-64-AVRO fingerprint seed (the spec's EMPTY).
const crc64Empty = 0xc15d213aa4d7a795

// crc64Table is the precomputed Rabin table of the Avro specification.
var crc64Table = func() (t [256]uint64) {
	for i := range t {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (crc64Empty & -(fp & 1))
		}
		t[i] = fp
	}
	return t
}()

// Fingerprint64 is the CRC-64-AVRO fingerprint of buf, as the Avro
// specification defines it for schema canonical forms.
func Fingerprint64(buf []byte) uint64 {
	fp := uint64(crc64Empty)
	for _, b := range buf {
		fp = (fp >> 8) ^ crc64Table[byte(fp)^b]
	}
	return fp
}
