"""Cisco GDOI reference trace: main mode + GROUPKEY-PULL as sent, and every derived value.

Source: Cisco GDOI reference implementation trace, stv0g/gdoid
samples/loopback/sample_output_ks, as reproduced in gdoi-wire.md §9 (KS 127.0.0.2,
GM 127.0.0.1).  Suite: main mode, 3DES-CBC, SHA1, pre-shared key, MODP group 2,
phase 1 SA with DOI 2; GROUPKEY-PULL for ID_KEY_ID 1234, no KEK, two ESP TEKs.
Values were copied from that document once; the tests never read it.
"""

from __future__ import annotations


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


PSK = b"mekmitasdigoat"
CKY_I = _hex("a91b9d50 35d8fc4f")
CKY_R = _hex("272325e6 95db688b")

# MM1: 80 octets as sent
MM1 = _hex(
    """
    a91b9d50 35d8fc4f 00000000 00000000 01100200 00000000 00000050 00000034
    00000002 00000000 00000028 01010001 00000020 00010000 80010005 80020002
    80030001 80040002 800b0001 800c0e10
    """
)

# MM2: 80 octets as sent
MM2 = _hex(
    """
    a91b9d50 35d8fc4f 272325e6 95db688b 01100200 00000000 00000050 00000034
    00000002 00000000 00000028 01010001 00000020 00010000 80010005 80020002
    80030001 80040002 800b0001 800c0e10
    """
)

# MM3: 180 octets as sent
MM3 = _hex(
    """
    a91b9d50 35d8fc4f 272325e6 95db688b 04100200 00000000 000000b4 0a000084
    dc3805d3 83333156 c9377ebb 9edcbf1e f47a3568 35f919a1 c001bced 4200a7f1
    ea756842 6f179a39 2bec73b5 a5ab53a4 2e23f6f8 d267445e e4162bdc 0383bf9f
    413288a5 ca001eb0 03f4ac01 6aca97bb b2141f25 762db6bd 4c2553a9 a053dfa7
    a4f3ea21 47859eba 999122da a3959ff7 37b276fd 1d610b88 f073296d 0899c928
    00000014 8dabce1d 9668bad7 f285a090 9fe43631
    """
)

# MM4: 180 octets as sent
MM4 = _hex(
    """
    a91b9d50 35d8fc4f 272325e6 95db688b 04100200 00000000 000000b4 0a000084
    a7af4111 7b9995e6 60aee99e 47a6768e 643adad7 a97dcb1b 702ce452 15f17e6b
    965190a9 992bcfaf 4d60ec3d ffa36cc6 66c47b8f c54057d3 63a9fdd3 f21c6f20
    82e52265 2ffcc71d 6831fd89 406d3594 d049da95 7bd84063 e0b7e5ab be9521b8
    fe09fea9 731031b8 f6a47b64 5e820c6d 139f6411 369bcb52 dab74e37 aeacc2e1
    00000014 f4eab493 b1a92507 4050d5ba 598f3613
    """
)

# MM5: 92 octets as sent
MM5 = _hex(
    """
    a91b9d50 35d8fc4f 272325e6 95db688b 05100201 00000000 0000005c 1dbe68d8
    9cb1fadd ac9ce755 92ebee87 22241f8f 0b3893fb d51cfa4a 67bfc2d6 3387a344
    db9a05ab d81b2da0 7fde6d17 3fd77a41 a3112203 519c8757 4c1fe705
    """
)

# MM6: 92 octets as sent
MM6 = _hex(
    """
    a91b9d50 35d8fc4f 272325e6 95db688b 05100201 00000000 0000005c 737cbd6c
    179b2f71 8d5b4840 0754148a 39814c80 aedfa085 e20fdc36 6e62cf5c ad99ce22
    59e22476 a63766f2 689bfd0d 24c374ec 51506b08 a659dffb 7a720843
    """
)

# PULL1: 84 octets as sent
PULL1 = _hex(
    """
    a91b9d50 35d8fc4f 272325e6 95db688b 08102001 483c11c0 00000054 9b257ede
    8c855951 8f905539 855b58e8 d17cb277 bdde509e eedc0ecf 673bf505 e07d6026
    a4e31df8 2fec55cd a62d62b2 b231f5b2 4155d6d6
    """
)

# PULL2: 180 octets as sent
PULL2 = _hex(
    """
    a91b9d50 35d8fc4f 272325e6 95db688b 08102001 483c11c0 000000b4 99ca3b06
    00345ffd 7df14316 86cf0f6d 703260ba 807123ab bf70bf2a bfc5003b 0b8b235f
    9083d54f 460f4e62 ce04b4b7 07f2865e 61e1a13e b4600e2b 97312fa6 817aefb1
    b4a8c147 cb9147ca b1f3604e e68b10e5 17e0e6f2 8be8b1e0 1b65af61 8aa95e55
    1b233623 efeb05db 74f074a2 54c31a71 b15b8493 7fd5b651 d1d80596 f436a2fe
    0cc3ab56 7cbad36b da9916a8 0ed13bd9 4832d2c0
    """
)

# PULL3: 52 octets as sent
PULL3 = _hex(
    """
    a91b9d50 35d8fc4f 272325e6 95db688b 08102001 483c11c0 00000034 38cdefae
    a5068ac2 2b8eed31 3516a90a 136ee6cc 1ebb09f5
    """
)

# PULL4: 188 octets as sent
PULL4 = _hex(
    """
    a91b9d50 35d8fc4f 272325e6 95db688b 08102001 483c11c0 000000bc 5fa0a653
    cb56424e 71a0d15a d11ea5d9 783d11d9 9a97bb08 4cb2ddc1 cc3ce34f 3a6adc0e
    95f33f94 e790e8f5 704e82dd b6c4be6b 8ba5775f 0b83f10d c20d2690 af87c98a
    4bc97cce 82843a85 2269d4a6 e5c92b64 6076bb06 bcf060b1 db468ef0 6a515f7d
    cdf4d954 d49c0170 5bddfe8d bc928909 87a75294 4fc3882b 52f5c798 dfbfa8b8
    f4933c66 6da9efba 545f90bd bbc5f93f 47f86de7 b2ba1eef 28e8ae0b
    """
)

# --- values the trace prints (gdoi-wire.md §9) ---

NI_B = _hex("8dabce1d9668bad7f285a0909fe43631")
NR_B = _hex("f4eab493b1a925074050d5ba598f3613")
G_XY = _hex(
    """
    e78e53b2bb018782ec0d0626c4e31b2f261b235d897a76391f8017f73775f020
    49d794b8a8da3bd06c7b0852dae2ed0c3dc639ca9d2608d0739606bce618a703
    bf40a86d7df260f5c1fb2bb64bb8a8a16ea350d32dbcd2532e16799b1eaae30d
    30147fc249c131699f18f9cce0d441ace0067fb5e150c97896b1dd2f27023d7f
    """
)
SKEYID = _hex("0a1ce288962c79cef60cf60d5d446fd5aa233cce")
SKEYID_D = _hex("a0196db2779136c544a59880acb75ed434bc82de")
SKEYID_A = _hex("83547d80355b03c1a3b332d80d6d60d8d0aedc49")
SKEYID_E = _hex("0ce6eb14700dc3b1030da7c712eb684e065f3b0c")
KEY_3DES = _hex("80cdab03c1105d2b48ab436dde73f5b1bbbe55449c1efe69")  # RFC 2409 App. B expansion
IV_MM5 = _hex("553ed9a239f300e2")  # SHA1(g^xi | g^xr)[:8]
IV_MM6 = _hex("519c87574c1fe705")  # last ciphertext block of MM5
HASH_I = _hex("a9b2433162a99ee60736c4f5de6e1a591a415f5a")
HASH_R = _hex("6e77c75290bb6817569faa791579756f9658f47f")

PULL_MESSAGE_ID = 0x483C11C0
IV_PULL1 = _hex("4be9d7f144ba8c2e")  # SHA1(last block of MM6 | M-ID)[:8]
PULL_NI_B = _hex("69d181efe0b9580e4106b883719b382a")
PULL_NR_B = _hex("da43c65f2ef1bf2076c00d1ebab8cd0e")
PULL_HASH1 = _hex("cbcd9b402b21b9a9837189139d6bb0f73b3272e3")
PULL_HASH2 = _hex("065807dea32536fd1ddb1acfafd74ee89218f32e")
PULL_HASH3 = _hex("790dd7c4d8b721adb6efdb0b6b9b0ee248428536")
PULL_HASH4 = _hex("5c669c6a1de367002c908a25b14d37200b98a036")
