<?php

declare(strict_types=1);

namespace Pushd;

/** A member of a group. */
final class Member
{
    public function __construct(
        public readonly string $uid,
        public readonly int $connections,
        /** Milliseconds until the membership ends; null without a TTL. */
        public readonly ?int $expiresMs,
    ) {
    }
}
