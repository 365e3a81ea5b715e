<?php

declare(strict_types=1);

namespace Pushd;

/** An online uid and its connections. */
final class OnlineUid
{
    /** @param list<Connection> $connections */
    public function __construct(public readonly string $uid, public readonly array $connections)
    {
    }
}
