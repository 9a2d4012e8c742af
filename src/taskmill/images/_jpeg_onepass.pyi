from typing_extensions import Buffer

def reencode_and_reduce(
    data: Buffer, quality: int, shrink: int, optimize_coding: bool, orientation: int, /
) -> tuple[bytes, bytes, int, int]: ...
