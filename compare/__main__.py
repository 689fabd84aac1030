"""``python -m compare``: see :mod:`compare.cli`."""

if __name__ == "__main__":
    from compare.cli import main

    main()
