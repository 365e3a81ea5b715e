<?php

declare(strict_types=1);

namespace Pushd;

/** The text port's answer to one push line. */
enum Reply: string
{
    /** A connection took it. */
    case Ok = 'ok';
    /** No connection took it; it waits in the mailbox (of at least one member, for a group). */
    case Queued = 'queued';
    /** Neither: nobody online and not kept (transient, banned, mailbox off or full), or a bad line. */
    case Fail = 'fail';

    /** Whether a connection took it or a mailbox kept it. */
    public function accepted(): bool
    {
        return $this !== self::Fail;
    }
}
