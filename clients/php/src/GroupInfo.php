<?php

declare(strict_types=1);

namespace Pushd;

/** A group with its member and online counts. */
final class GroupInfo
{
    public function __construct(
        public readonly string $group,
        public readonly int $members,
        public readonly int $online,
    ) {
    }
}
