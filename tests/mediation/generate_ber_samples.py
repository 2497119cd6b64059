#!/usr/bin/env python3
"""Independent generator of 3GPP TS 32.298 BER CDRs in TS 32.297 CDR files.

    python3 tests/mediation/generate_ber_samples.py OUTDIR      write the samples
    python3 tests/mediation/generate_ber_samples.py --dump FILE  print framing + TLV tree

The CDR bodies are encoded by pycrate (PyPI `pycrate`, tested with 0.8.1) from its
compiled TS 32.298 modules (`pycrate_asn1dir.CDR`, modules GPRSChargingDataTypes,
CSChargingDataTypes, GenericChargingDataTypes).  Nothing in the Rust code base is
used, so the files are a second opinion on the wire format.  The TS 32.297 framing
(file header, CDR headers) is written by hand below, byte by byte.

pycrate 0.8.1 has no CHFChargingDataTypes module compiled in (only the RecordType
value chargingFunctionRecord(200) exists).  For the CHF-CDRs this script compiles
tests/mediation/chf-subset.asn, our hand-written subset of that module (TS 32.298
Rel-16), with pycrate's ASN.1 compiler (pycrate_asn1c) at run time and encodes with
the result.  So for CHF the encoding is pycrate's but the tags are our transcription
of the spec, not pycrate's; BER-LAYOUT.md says what they were checked against.

Output is deterministic: fixed timestamps, fixed values, random.Random(SEED) for
the garbage bytes.  See tests/mediation/BER-LAYOUT.md for the tag table and the
framing layout, both checked against a dump of these files.

Files written into OUTDIR:
    pgw.cdr             3 PGW-CDRs (GPRSRecord.pGWRecord), TS 32.251
    sgw.cdr             2 SGW-CDRs (GPRSRecord.sGWRecord), TS 32.251
    moc.cdr             2 MOC records (CSRecord.moCallRecord), TS 32.250
    mixed.cdr           PGW, SGW and MOC records in one file (per-CDR TS number)
    truncated.cdr       pgw.cdr cut in the middle of the 2nd CDR
    bad-length.cdr      pgw.cdr with the 2nd CDR header's length set to 0xFFFF
    garbage-middle.cdr  pgw.cdr with the 2nd CDR's BER bytes replaced by random bytes
    lying-count.cdr     the pgw.cdr CDRs, file header says 10 CDRs (sequence 6)
    lost-cdrs.cdr       the pgw.cdr CDRs, lost CDR indicator 0x83 (sequence 7)
    chf.cdr             2 CHF-CDRs (CHFRecord.chargingFunctionRecord), TS 32.255
                        (sequence 8)
    chf-truncated.cdr   chf.cdr cut in the middle of the 2nd CDR
    redelivered.cdr     the PGW-CDRs of pgw.cdr and the MOC records of moc.cdr
                        encoded again with other optional fields, the P-GW address
                        as text and the call times in UTC+01:00: the same records
                        (sequence 9)
    moc-shared-reference.cdr
                        MOC records of two subscribers that share the MSC, call
                        reference, sequence number and seizure time (sequence 10)
    chf-session.cdr     2 CHF-CDRs that carry their identifying fields (chargingID,
                        PDU session charging ID, localRecordSequenceNumber, the
                        containers' localSequenceNumber) (sequence 11)
    chf-session-redelivered.cdr
                        the same 2 CHF-CDRs encoded again with other optional
                        fields and trigger times in UTC+01:00 (sequence 12)
"""

import datetime as _dt
import os
import random
import struct
import sys

SEED = 20260302

# --------------------------------------------------------------------------
# TS 32.297 framing
# --------------------------------------------------------------------------
#
# CDR file header (TS 32.297 clause 6.1.1), big-endian, as written here.
# Offsets are 0-based byte offsets (the spec numbers octets from 1: offset+1).
#
#   off  size  field
#   0    4     File length: whole file in octets, header and all CDRs included
#   4    4     Header length: the file header in octets (54 here); the first CDR
#              header starts at this offset
#   8    1     High release identifier (bits 8-6) | high version identifier
#              (bits 5-1): highest release/version of any CDR in the file
#   9    1     Low release identifier (bits 8-6) | low version identifier (bits 5-1)
#              Release identifier: 0=R99, 1=Rel-4 ... 6=Rel-9, 7="Rel-10 or later",
#              the real release is then 10 + the release identifier extension
#              (offsets 52/53).  Written: 7 | 11 -> 0xEB (Rel-16, 32.298 v16.11.0,
#              the version pycrate's compiled modules come from; see BER-LAYOUT.md)
#   10   4     File opening timestamp   \  each a 32-bit word, MSB first:
#   14   4     Last CDR append timestamp /   month(4) day(5) hour(5) minute(6)
#              sign(1: 1='+', 0='-') UTC-offset hours(5) UTC-offset minutes(6)
#   18   4     Number of CDRs in file
#   22   4     File sequence number
#   26   1     File closure trigger reason (0 = normal closure)
#   27   20    IP address of the node that generated the file: 4 octets 0xFF then
#              a 16-octet IPv6 address; IPv4 10.0.0.1 as IPv4-mapped ::ffff:10.0.0.1
#   47   1     Lost CDR indicator: 0 = none lost; non-zero = CDRs lost (bit 8 set:
#              bits 7-1 give the exact number, clear: a lower bound, as read by
#              e.g. SigScale's cgf); lost-cdrs.cdr uses 0x83 (exactly 3 lost)
#   48   2     Length of CDR routeing filter (0 here)
#   50   0     CDR routeing filter (absent)
#   50   2     Length of private extension (0 here)
#   52   0     Private extension (absent)
#   52   1     High release identifier extension (6 -> Rel-16; only because the
#              high release identifier is 7)
#   53   1     Low release identifier extension (6 -> Rel-16; idem)
#   54         first CDR header
#
# Readers must take the first CDR's offset from "Header length", not from a fixed
# size: producers differ (some omit the 2-octet private-extension length when there
# is no private extension, which gives a 52-octet header).
#
# CDR header (TS 32.297 clause 6.1.2), in front of every CDR:
#
#   off  size  field
#   0    2     CDR length: octets of the BER CDR that follows, header excluded
#   2    1     Release identifier (bits 8-6) | version identifier (bits 5-1):
#              0xEB = 7 | 11 as in the file header
#   3    1     Data record format (bits 8-6: 1=BER, 2=unaligned PER, 3=aligned PER,
#              4=XER) | TS number (bits 5-1: 6 = TS 32.250 CS, 7 = TS 32.251 PS,
#              ... 20 = TS 32.255 5G data connectivity): 0x27 for PGW/SGW, 0x26 MOC,
#              0x34 for the CHF-CDRs (20: TS 32.255; the lists of TS numbers we found
#              have no value for TS 32.290/32.291, see BER-LAYOUT.md)
#   4    1     Release identifier extension (present because release id = 7): 6
#   5          the BER-encoded CDR (CDR length octets)
#
# Since every CDR header carries its own TS number and release, one file may mix
# record kinds (mixed.cdr).

FILE_HEADER_LEN = 54
CDR_HEADER_LEN = 5
RELEASE_ID = 7          # "beyond Rel-9": real release in the extension octet
RELEASE_EXT = 6         # 10 + 6 = Rel-16
VERSION_ID = 11         # TS 32.298 v16.11.0
FORMAT_BER = 1
TS_32250 = 6            # CS domain (MOC)
TS_32251 = 7            # PS domain (PGW, SGW)
TS_32255 = 20           # 5G data connectivity (the CHF-CDRs of an SMF's PDU sessions)
NODE_IPV4 = bytes([10, 0, 0, 1])


def header_timestamp(t):
    """TS 32.297 4-octet file header timestamp of a UTC datetime (offset +00:00)."""
    sign = 1  # '+'
    off_h = 0
    off_m = 0
    word = (t.month << 28) | (t.day << 23) | (t.hour << 18) | (t.minute << 12) \
        | (sign << 11) | (off_h << 6) | off_m
    return struct.pack(">I", word)


def rel_ver_octet():
    return bytes([(RELEASE_ID << 5) | VERSION_ID])


def cdr_header(body_len, ts_number):
    return struct.pack(">H", body_len) + rel_ver_octet() \
        + bytes([(FORMAT_BER << 5) | ts_number, RELEASE_EXT])


def file_header(file_len, n_cdrs, seq, opened, appended, lost=0):
    h = b""
    h += struct.pack(">I", file_len)                      # 0  file length
    h += struct.pack(">I", FILE_HEADER_LEN)               # 4  header length
    h += rel_ver_octet()                                  # 8  high release/version
    h += rel_ver_octet()                                  # 9  low release/version
    h += header_timestamp(opened)                         # 10 file opening timestamp
    h += header_timestamp(appended)                       # 14 last CDR append timestamp
    h += struct.pack(">I", n_cdrs)                        # 18 number of CDRs
    h += struct.pack(">I", seq)                           # 22 file sequence number
    h += bytes([0])                                       # 26 closure reason: normal
    h += b"\xff" * 4 + b"\x00" * 10 + b"\xff\xff" + NODE_IPV4  # 27 node address
    h += bytes([lost])                                    # 47 lost CDR indicator
    h += struct.pack(">H", 0)                             # 48 routeing filter length
    h += struct.pack(">H", 0)                             # 50 private extension length
    h += bytes([RELEASE_EXT])                             # 52 high release id extension
    h += bytes([RELEASE_EXT])                             # 53 low release id extension
    assert len(h) == FILE_HEADER_LEN
    return h


class Cdr:
    """One encoded CDR: BER body, TS number, first and last instants."""

    def __init__(self, kind, ber, ts_number, opened, closed):
        self.kind = kind
        self.ber = ber
        self.ts_number = ts_number
        self.opened = opened
        self.closed = closed


def cdr_file(cdrs, seq, lost=0, claimed_count=None):
    """A whole TS 32.297 file; returns (bytes, [offset of each CDR header])."""
    body = b""
    offsets = []
    for c in cdrs:
        assert len(c.ber) <= 0xFFFF
        offsets.append(FILE_HEADER_LEN + len(body))
        body += cdr_header(len(c.ber), c.ts_number) + c.ber
    opened = min(c.opened for c in cdrs)
    appended = max(c.closed for c in cdrs)
    count = len(cdrs) if claimed_count is None else claimed_count
    data = file_header(FILE_HEADER_LEN + len(body), count, seq, opened, appended, lost) + body
    return data, offsets


# --------------------------------------------------------------------------
# TS 32.298 field encodings
# --------------------------------------------------------------------------

def tbcd(digits):
    """TBCD-STRING (TS 29.002): two digits per octet, first digit in the low
    nibble, odd length padded with 0xF in the high nibble of the last octet."""
    if len(digits) % 2:
        digits += "F"
    out = bytearray()
    for i in range(0, len(digits), 2):
        out.append((int(digits[i + 1], 16) << 4) | int(digits[i], 16))
    return bytes(out)


def address_string(digits):
    """AddressString / ISDN-AddressString / BCDDirectoryNumber: first octet 0x91
    (extension bit, international number, ISDN/E.164 plan), then TBCD digits."""
    return b"\x91" + tbcd(digits)


def bcd2(n):
    return ((n // 10) << 4) | (n % 10)


def timestamp(t, offset_hours=0):
    """TS 32.298 TimeStamp, OCTET STRING (SIZE(9)): YY MM DD hh mm ss in BCD (one
    octet per pair, high nibble = first digit), then the sign of the UTC offset as
    ASCII ('+' = 0x2B, '-' = 0x2D), then the offset hh mm in BCD.  t is UTC; the
    local time written is t + offset_hours (the same instant)."""
    t = t + _dt.timedelta(hours=offset_hours)
    return bytes([bcd2(t.year % 100), bcd2(t.month), bcd2(t.day), bcd2(t.hour),
                  bcd2(t.minute), bcd2(t.second)]) + b"+" + bytes([bcd2(offset_hours), 0x00])


def bits(nbits, *positions):
    """Value of a pycrate BIT STRING: (int, length) with ASN.1 bit 0 first."""
    v = 0
    for p in positions:
        v |= 1 << (nbits - 1 - p)
    return (v, nbits)


def ipv4(a):
    return ("iPBinaryAddress", ("iPBinV4Address", bytes(a)))


def ipv4_text(a):
    """The same address as IPTextRepresentedAddress.iPTextV4Address [2]."""
    return ("iPTextRepresentedAddress", ("iPTextV4Address", ".".join(str(x) for x in a)))


T0 = _dt.datetime(2026, 3, 2, 10, 0, 0)


def at(seconds):
    return T0 + _dt.timedelta(seconds=seconds)


IMSI_1 = "262010000000001"
MSISDN_1 = "491700000001"
IMSI_2 = "262010000000002"
MSISDN_2 = "491700000002"
CALLED = "4990012345"
MSC = "491720000000"

# ServiceConditionChange bit numbers (GPRSChargingDataTypes)
SCC_TARIFF_TIME_SWITCH = 3
SCC_RECORD_CLOSURE = 24
SCC_TIME_LIMIT = 25


def _asn():
    try:
        from pycrate_asn1dir import CDR
    except ImportError:
        sys.exit("generate_ber_samples: needs pycrate (pip install pycrate==0.8.1)")
    return CDR.GLOBAL.MOD


def encode(G, module, typ, value):
    """BER-encode with pycrate, decode again and insist on the same value."""
    obj = G[module][typ]
    obj.set_val(value)
    ber = obj.to_ber()
    obj.from_ber(ber)
    if obj.get_val() != value:
        raise SystemExit("round trip mismatch for %s.%s" % (module, typ))
    return ber


def service_container(rg, up, down, first, last, report, *scc):
    """One ChangeOfServiceCondition (listOfServiceData entry)."""
    return {
        "ratingGroup": rg,
        "localSequenceNumber": 0,  # replaced by caller
        "timeOfFirstUsage": timestamp(at(first)),
        "timeOfLastUsage": timestamp(at(last)),
        "timeUsage": last - first,
        "serviceConditionChange": bits(max(scc) + 1, *scc),
        "datavolumeFBCUplink": up,
        "datavolumeFBCDownlink": down,
        "timeOfReport": timestamp(at(report)),
    }


def pgw_record(G, imsi, msisdn, charging_id, seq, opened, duration, cause, containers,
               redelivery=False):
    """One PGW-CDR.  redelivery: the same record as a CGF might deliver it again,
    encoded with other optional fields (no accessPointNameNI, rATType or
    timeOfLastUsage; apnSelectionMode, dynamicAddressFlag and mSTimeZone added) and
    its P-GW address as text: nothing that identifies it changes."""
    lsn = []
    for i, c in enumerate(containers):
        c = dict(c)
        c["localSequenceNumber"] = seq * 10 + i + 1
        if redelivery:
            del c["timeOfLastUsage"]
        lsn.append(c)
    value = ("pGWRecord", {
        "recordType": 85,                                   # pGWRecord
        "servedIMSI": tbcd(imsi),
        "p-GWAddress": ipv4([10, 0, 0, 1]),
        "chargingID": charging_id,
        "servingNodeAddress": [ipv4([10, 0, 1, 1])],
        "accessPointNameNI": "internet",
        "recordOpeningTime": timestamp(at(opened)),
        "duration": duration,
        "causeForRecClosing": cause,
        "recordSequenceNumber": seq,
        "nodeID": "pgw-fra-01",
        "localSequenceNumber": charging_id * 10 + seq,
        "servedMSISDN": address_string(msisdn),
        "chargingCharacteristics": b"\x08\x00",
        "rATType": 6,                                       # EUTRAN
        "listOfServiceData": lsn,
        "servingNodeType": ["gTPSGW"],
    })
    if redelivery:
        fields = value[1]
        del fields["accessPointNameNI"], fields["rATType"]
        fields["p-GWAddress"] = ipv4_text([10, 0, 0, 1])
        fields["apnSelectionMode"] = "mSorNetworkProvidedSubscriptionVerified"
        fields["dynamicAddressFlag"] = True
        fields["mSTimeZone"] = b"\x40\x00"
    ber = encode(G, "GPRSChargingDataTypes", "GPRSRecord", value)
    return Cdr("pgw", ber, TS_32251, at(opened), at(opened + duration))


def sgw_record(G, imsi, msisdn, charging_id, seq, opened, duration, volumes):
    tv = []
    for up, down, cond, when in volumes:
        tv.append({
            "dataVolumeGPRSUplink": up,
            "dataVolumeGPRSDownlink": down,
            "changeCondition": cond,
            "changeTime": timestamp(at(when)),
        })
    value = ("sGWRecord", {
        "recordType": 84,                                   # sGWRecord
        "servedIMSI": tbcd(imsi),
        "s-GWAddress": ipv4([10, 0, 1, 1]),
        "chargingID": charging_id,
        "servingNodeAddress": [ipv4([10, 0, 2, 1])],
        "accessPointNameNI": "internet",
        "listOfTrafficVolumes": tv,
        "recordOpeningTime": timestamp(at(opened)),
        "duration": duration,
        "causeForRecClosing": 0,                            # normalRelease
        "recordSequenceNumber": seq,
        "nodeID": "sgw-fra-01",
        "servedMSISDN": address_string(msisdn),
        "chargingCharacteristics": b"\x08\x00",
        "rATType": 6,
        "servingNodeType": ["mME"],
        "p-GWAddressUsed": ipv4([10, 0, 0, 1]),
    })
    ber = encode(G, "GPRSChargingDataTypes", "GPRSRecord", value)
    return Cdr("sgw", ber, TS_32251, at(opened), at(opened + duration))


def moc_record(G, imsi, msisdn, called, seq, seized, answered, duration, call_ref,
               redelivery=False):
    """One MOC record.  redelivery: encoded again with other optional fields (a
    servedIMEI, no releaseTime) and its times in UTC+01:00: the same record."""
    tz = 1 if redelivery else 0
    value = ("moCallRecord", {
        "recordType": 0,                                    # moCallRecord
        "servedIMSI": tbcd(imsi),
        "servedMSISDN": address_string(msisdn),
        "calledNumber": address_string(called),
        "recordingEntity": address_string(MSC),
        "seizureTime": timestamp(at(seized), tz),
        "answerTime": timestamp(at(answered), tz),
        "releaseTime": timestamp(at(answered + duration), tz),
        "callDuration": duration,
        "causeForTerm": 0,                                  # normalRelease
        "callReference": struct.pack(">I", call_ref),
        "sequenceNumber": seq,
    })
    if redelivery:
        del value[1]["releaseTime"]
        value[1]["servedIMEI"] = tbcd("3520990017614823")
    ber = encode(G, "CSChargingDataTypes", "CSRecord", value)
    return Cdr("moc", ber, TS_32250, at(seized), at(answered + duration))


# --------------------------------------------------------------------------
# CHF-CDRs: encoded with our subset of CHFChargingDataTypes, compiled at run time
# --------------------------------------------------------------------------

CHF_ASN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chf-subset.asn")
CHF_MODULE = "CHF-CDR-Subset"

# NetworkFunctionName is a UUID (version 4) in the spec; fixed made-up ones here.
CHF_NF_ID = "0c4f0000-0000-4000-8000-000000000001"   # the CHF that wrote the CDRs
SMF_NF_ID = "05af0000-0000-4000-8000-000000000001"   # the SMF it charged for


def _chf_asn():
    """Compiles chf-subset.asn with pycrate_asn1c, has pycrate generate the Python
    module for it into a temporary folder, imports that and returns its GLOBAL.MOD
    (the generated module registers itself in pycrate's runtime GLOBAL.MOD, which
    also holds pycrate_asn1dir.CDR's modules; its _IMPL_ entry is replaced, which is
    why the CHF-CDRs are built after the others)."""
    import importlib.util
    import tempfile
    try:
        from pycrate_asn1c.asnproc import (GLOBAL, PycrateGenerator, compile_text,
                                           generate_modules)
    except ImportError:
        sys.exit("generate_ber_samples: needs pycrate_asn1c (pip install pycrate==0.8.1)")
    with open(CHF_ASN, encoding="utf-8") as f:
        text = f.read()
    GLOBAL.clear()
    compile_text(text, filenames=[CHF_ASN])
    with tempfile.TemporaryDirectory(prefix="chf-subset-") as tmp:
        dest = os.path.join(tmp, "chf_subset_generated.py")
        generate_modules(PycrateGenerator, dest)
        spec = importlib.util.spec_from_file_location("chf_subset_generated", dest)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.GLOBAL.MOD


def used_units(seconds, trigger=None, up=None, down=None, total=None, first=None, last=None,
               lsn=None, tz=0, service=True):
    """One UsedUnitContainer: time used, optional triggerTimeStamp, volumes, the
    PDU container's first and last usage times and the container's local sequence
    number."""
    c = {"serviceIdentifier": 1, "time": seconds} if service else {"time": seconds}
    if trigger is not None:
        c["triggerTimeStamp"] = timestamp(at(trigger), tz)
    if first is not None:
        c["pDUContainerInformation"] = {
            "timeOfFirstUsage": timestamp(at(first)),
            "timeOfLastUsage": timestamp(at(last)),
        }
    if total is not None:
        c["dataTotalVolume"] = total
    if up is not None:
        c["dataVolumeUplink"] = up
    if down is not None:
        c["dataVolumeDownlink"] = down
    if lsn is not None:
        c["localSequenceNumber"] = lsn
    return c


def chf_record(G, id_type, id_data, seq, opened, duration, cause, usages, ids=None,
               redelivery=False):
    """One CHF-CDR; usages: [(rating group, [UsedUnitContainer, ...]), ...]; ids:
    the identifying fields to add (chargingID, pDUSessionChargingInformation,
    localRecordSequenceNumber).  redelivery: without the consumer's
    networkFunctionName (an optional field)."""
    value = ("chargingFunctionRecord", {
        "recordType": 200,                                  # chargingFunctionRecord
        "recordingNetworkFunctionID": CHF_NF_ID,
        "subscriberIdentifier": {
            "subscriptionIDType": id_type,
            "subscriptionIDData": id_data,
        },
        "nFunctionConsumerInformation": {
            "networkFunctionality": "sMF",
            "networkFunctionName": SMF_NF_ID,
        },
        "listOfMultipleUnitUsage": [
            {"ratingGroup": rg, "usedUnitContainers": containers}
            for rg, containers in usages
        ],
        "recordOpeningTime": timestamp(at(opened)),
        "duration": duration,
        "recordSequenceNumber": seq,
        "causeForRecClosing": cause,
    })
    if ids:
        value[1].update(ids)
    if redelivery:
        del value[1]["nFunctionConsumerInformation"]["networkFunctionName"]
    ber = encode(G, CHF_MODULE, "CHFRecord", value)
    return Cdr("chf", ber, TS_32255, at(opened), at(opened + duration))


def build_chf_records(G):
    return [
        # subscriber 1 by MSISDN (E.164), opened 10:30:00 for 600 s
        chf_record(G, "eND-USER-E164", MSISDN_1, 1, 1800, 600, 0, [
            # rating group 30: two containers, uplink/downlink, the time each
            # covers and the trigger time that closed it
            (30, [
                used_units(240, trigger=2040, up=120000, down=480000),
                used_units(300, trigger=2340, up=80000, down=320000),
            ]),
            # a second entry for rating group 30 (as from a second UPF): total
            # volume only, no trigger time (the record's opening time applies)
            (30, [
                used_units(600, total=250000),
            ]),
        ]),
        # subscriber 2 by IMSI, opened 10:40:00 for 120 s
        chf_record(G, "eND-USER-IMSI", IMSI_2, 1, 2400, 120, 0, [
            (30, [
                # the SMF's first and last usage times inside the container
                used_units(120, trigger=2520, up=50000, down=150000, first=2410, last=2500),
            ]),
        ]),
    ]


def build_chf_session_records(G, redelivery=False):
    """Two CHF-CDRs of one PDU session of subscriber 1 (its 1st and 2nd partial
    records) that carry their identifying fields; redelivery: the same records
    encoded again (other optional fields, trigger times in UTC+01:00)."""
    tz = 1 if redelivery else 0
    service = not redelivery

    def ids(local_record_seq):
        return {
            "localRecordSequenceNumber": local_record_seq,
            "pDUSessionChargingInformation": {"pDUSessionChargingID": 7001, "pDUSessionId": 5},
            "chargingID": 7001,
        }

    return [
        chf_record(G, "eND-USER-E164", MSISDN_1, 1, 3000, 300, 17, [
            (30, [
                used_units(120, trigger=3120, up=10000, down=40000, lsn=1, tz=tz, service=service),
                used_units(180, trigger=3300, up=20000, down=80000, lsn=2, tz=tz, service=service),
            ]),
        ], ids=ids(501), redelivery=redelivery),
        chf_record(G, "eND-USER-E164", MSISDN_1, 2, 3300, 300, 0, [
            (30, [
                used_units(300, trigger=3600, up=30000, down=90000, lsn=3, tz=tz, service=service),
            ]),
        ], ids=ids(502), redelivery=redelivery),
    ]


def build_chf_files(G):
    chf = build_chf_records(G)
    files = {}
    files["chf-session.cdr"], _ = cdr_file(build_chf_session_records(G), seq=11)
    files["chf-session-redelivered.cdr"], _ = cdr_file(
        build_chf_session_records(G, redelivery=True), seq=12)
    files["chf.cdr"], offsets = cdr_file(chf, seq=8)
    # chf-truncated.cdr: cut in the middle of the 2nd CDR's BER body; the file header
    # still claims the original file length and 2 CDRs.
    second = offsets[1]
    files["chf-truncated.cdr"] = files["chf.cdr"][:second + CDR_HEADER_LEN + len(chf[1].ber) // 2]
    return files


def build_records(G):
    pgw = [
        # subscriber 1, bearer 1001, first partial record (closed by time limit)
        pgw_record(G, IMSI_1, MSISDN_1, 1001, 1, 0, 300, 17, [
            service_container(30, 120000, 480000, 5, 150, 150, SCC_TARIFF_TIME_SWITCH),
            service_container(30, 100000, 350000, 150, 300, 300, SCC_TIME_LIMIT),
        ]),
        # subscriber 1, bearer 1001, second partial record (normal release)
        pgw_record(G, IMSI_1, MSISDN_1, 1001, 2, 300, 300, 0, [
            service_container(30, 150000, 600000, 300, 590, 600, SCC_RECORD_CLOSURE),
        ]),
        # subscriber 2, bearer 1002
        pgw_record(G, IMSI_2, MSISDN_2, 1002, 1, 600, 120, 0, [
            service_container(30, 200000, 550000, 610, 720, 720, SCC_RECORD_CLOSURE),
        ]),
    ]
    sgw = [
        sgw_record(G, IMSI_1, MSISDN_1, 1001, 1, 0, 600, [
            (220000, 830000, "tariffTime", 300),
            (150000, 600000, "recordClosure", 600),
        ]),
        sgw_record(G, IMSI_1, MSISDN_1, 1003, 1, 1200, 60, [
            (100000, 200000, "recordClosure", 1260),
        ]),
    ]
    moc = [
        moc_record(G, IMSI_1, MSISDN_1, CALLED, 1, 0, 5, 60, 0x00010001),
        moc_record(G, IMSI_1, MSISDN_1, CALLED, 2, 1800, 1808, 125, 0x00010002),
    ]
    return pgw, sgw, moc


def build_redelivered_records(G):
    """pgw.cdr's and moc.cdr's records as a CGF might deliver them again."""
    return [
        pgw_record(G, IMSI_1, MSISDN_1, 1001, 1, 0, 300, 17, [
            service_container(30, 120000, 480000, 5, 150, 150, SCC_TARIFF_TIME_SWITCH),
            service_container(30, 100000, 350000, 150, 300, 300, SCC_TIME_LIMIT),
        ], redelivery=True),
        pgw_record(G, IMSI_1, MSISDN_1, 1001, 2, 300, 300, 0, [
            service_container(30, 150000, 600000, 300, 590, 600, SCC_RECORD_CLOSURE),
        ], redelivery=True),
        pgw_record(G, IMSI_2, MSISDN_2, 1002, 1, 600, 120, 0, [
            service_container(30, 200000, 550000, 610, 720, 720, SCC_RECORD_CLOSURE),
        ], redelivery=True),
        moc_record(G, IMSI_1, MSISDN_1, CALLED, 1, 0, 5, 60, 0x00010001, redelivery=True),
        moc_record(G, IMSI_1, MSISDN_1, CALLED, 2, 1800, 1808, 125, 0x00010002,
                   redelivery=True),
    ]


def build_shared_reference_records(G):
    """MOC records of subscribers 1 and 2 from one MSC.  Records 1 and 2 share the
    call reference, sequence number and seizure time (the MSC numbered two calls
    alike), as do records 3, 4 and 5; 5 is 4 delivered twice.  Record 1 is an hour
    to a premium number: more than subscriber 1's balance."""
    return [
        moc_record(G, IMSI_1, MSISDN_1, CALLED, 1, 600, 605, 3600, 0x00020001),
        moc_record(G, IMSI_2, MSISDN_2, CALLED, 1, 600, 605, 60, 0x00020001),
        moc_record(G, IMSI_2, MSISDN_2, CALLED, 1, 1200, 1205, 60, 0x00020002),
        moc_record(G, IMSI_1, MSISDN_1, CALLED, 1, 1200, 1205, 60, 0x00020002),
        moc_record(G, IMSI_1, MSISDN_1, CALLED, 1, 1200, 1205, 60, 0x00020002),
    ]


def build_files(G):
    pgw, sgw, moc = build_records(G)
    files = {}
    files["pgw.cdr"], pgw_offsets = cdr_file(pgw, seq=1)
    files["sgw.cdr"], _ = cdr_file(sgw, seq=2)
    files["moc.cdr"], _ = cdr_file(moc, seq=3)
    files["mixed.cdr"], _ = cdr_file([pgw[0], sgw[0], moc[0], pgw[2], moc[1]], seq=4)

    base = files["pgw.cdr"]
    second = pgw_offsets[1]
    second_len = len(pgw[1].ber)

    # truncated.cdr: cut in the middle of the 2nd CDR's BER body; the file header
    # still claims the original file length and 3 CDRs.
    files["truncated.cdr"] = base[:second + CDR_HEADER_LEN + second_len // 2]

    # bad-length.cdr: the 2nd CDR header's length is 0xFFFF, more than the file.
    b = bytearray(base)
    b[second:second + 2] = struct.pack(">H", 0xFFFF)
    assert 0xFFFF > len(b) - second
    files["bad-length.cdr"] = bytes(b)

    # garbage-middle.cdr: the 2nd CDR's BER bytes replaced by random bytes of the
    # same length; its CDR header (length, release, format, TS) is kept.
    rng = random.Random(SEED)
    junk = bytes(rng.randrange(256) for _ in range(second_len))
    b = bytearray(base)
    b[second + CDR_HEADER_LEN:second + CDR_HEADER_LEN + second_len] = junk
    files["garbage-middle.cdr"] = bytes(b)
    obj = G["GPRSChargingDataTypes"]["GPRSRecord"]
    try:
        obj.from_ber(junk)
        raise SystemExit("garbage happens to decode as a GPRSRecord; change SEED")
    except SystemExit:
        raise
    except Exception:
        pass

    # lying-count.cdr: header claims 10 CDRs, the file holds 3.
    files["lying-count.cdr"], _ = cdr_file(pgw, seq=6, claimed_count=10)

    # lost-cdrs.cdr: valid file, lost CDR indicator 0x83.
    files["lost-cdrs.cdr"], _ = cdr_file(pgw, seq=7, lost=0x83)

    files["redelivered.cdr"], _ = cdr_file(build_redelivered_records(G), seq=9)
    files["moc-shared-reference.cdr"], _ = cdr_file(build_shared_reference_records(G), seq=10)
    return files


# --------------------------------------------------------------------------
# Independent reader used by --dump (and as a self-check): a plain TLV walker
# --------------------------------------------------------------------------

CLASSES = ("UNIV", "APPL", "CTX", "PRIV")


def read_tlv(buf, pos, end):
    """One BER TLV at pos; returns (cls, constructed, tagnum, tag_len, hdr_len, length)."""
    start = pos
    if pos >= end:
        raise ValueError("no tag at %d" % pos)
    b0 = buf[pos]
    pos += 1
    cls = b0 >> 6
    constructed = bool(b0 & 0x20)
    num = b0 & 0x1F
    if num == 0x1F:
        num = 0
        while True:
            if pos >= end:
                raise ValueError("tag runs past end")
            b = buf[pos]
            pos += 1
            num = (num << 7) | (b & 0x7F)
            if not b & 0x80:
                break
    tag_len = pos - start
    if pos >= end:
        raise ValueError("no length at %d" % pos)
    l0 = buf[pos]
    pos += 1
    if l0 == 0x80:
        raise ValueError("indefinite length at %d" % (pos - 1))
    if l0 & 0x80:
        n = l0 & 0x7F
        if pos + n > end:
            raise ValueError("length runs past end")
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    else:
        length = l0
    if pos + length > end:
        raise ValueError("value of %d octets at %d runs past end %d" % (length, pos, end))
    return cls, constructed, num, tag_len, pos - start, length


def walk(buf, pos, end, depth, out):
    while pos < end:
        cls, cons, num, tag_len, hdr_len, length = read_tlv(buf, pos, end)
        value = buf[pos + hdr_len:pos + hdr_len + length]
        out.append((depth, pos, buf[pos:pos + tag_len], cls, cons, num, length, value))
        if cons:
            walk(buf, pos + hdr_len, pos + hdr_len + length, depth + 1, out)
        pos += hdr_len + length
    return out


def describe_header_ts(word):
    return "%02d-%02d %02d:%02d %s%02d:%02d" % (
        word >> 28, (word >> 23) & 0x1F, (word >> 18) & 0x1F, (word >> 12) & 0x3F,
        "+" if (word >> 11) & 1 else "-", (word >> 6) & 0x1F, word & 0x3F)


def dump(path):
    data = open(path, "rb").read()
    print("%s: %d octets" % (path, len(data)))
    if len(data) < 50:
        print("  too short for a file header")
        return
    flen, hlen = struct.unpack(">II", data[0:8])
    print("  file length %d, header length %d" % (flen, hlen))
    print("  high rel/ver 0x%02x, low rel/ver 0x%02x" % (data[8], data[9]))
    print("  opened %s, last append %s" % (
        describe_header_ts(struct.unpack(">I", data[10:14])[0]),
        describe_header_ts(struct.unpack(">I", data[14:18])[0])))
    n, seq = struct.unpack(">II", data[18:26])
    print("  CDRs %d, sequence %d, closure reason %d, lost 0x%02x" % (n, seq, data[26], data[47]))
    print("  node %s" % data[27:47].hex())
    print("  header bytes: %s" % data[:hlen].hex())
    pos = hlen
    i = 0
    while pos < len(data):
        i += 1
        if pos + 4 > len(data):
            print("  CDR %d: truncated CDR header at %d" % (i, pos))
            return
        clen = struct.unpack(">H", data[pos:pos + 2])[0]
        rel = data[pos + 2] >> 5
        hl = CDR_HEADER_LEN if rel == 7 else 4
        print("  CDR %d at %d: header %s, length %d, TS number %d, format %d" % (
            i, pos, data[pos:pos + hl].hex(), clen, data[pos + 3] & 0x1F, data[pos + 3] >> 5))
        body = data[pos + hl:pos + hl + clen]
        if len(body) < clen:
            print("    CDR runs past end of file (%d of %d octets)" % (len(body), clen))
            return
        try:
            for depth, off, tag, cls, cons, num, length, value in walk(body, 0, len(body), 0, []):
                shown = "" if cons else " = " + value.hex()
                print("    %s%s %s %s [%d] len %d%s" % (
                    "  " * depth, tag.hex(), CLASSES[cls], "cons" if cons else "prim",
                    num, length, shown))
        except ValueError as e:
            print("    not BER: %s (first octets %s)" % (e, body[:8].hex()))
        pos += hl + clen


def main(argv):
    if len(argv) == 3 and argv[1] == "--dump":
        dump(argv[2])
        return 0
    if len(argv) != 2 or argv[1].startswith("-"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    outdir = argv[1]
    G = _asn()
    files = build_files(G)
    # After the others: importing the generated CHF module replaces GLOBAL.MOD['_IMPL_'].
    files.update(build_chf_files(_chf_asn()))
    os.makedirs(outdir, exist_ok=True)
    for name in sorted(files):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(files[name])
        print("%-20s %5d octets" % (name, len(files[name])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
